"""The accuracy fallback can return *every* node onnxruntime quantizes to float, activation-only ones included
(a ViT's Softmax, activation x activation MatMul, residual Add, LayerNormalization), and its search finds such a
node: a tiny attention block exported by edgepipe's own exporter, quantized by the real tracks. Seconds."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgepipe.data.base import Split
from edgepipe.quant import sensitivity
from edgepipe.quant.calibration import ArrayDataReader
from edgepipe.quant.tracks import calibrate, cpu_track, preprocess, quantize_track, quantized_nodes, trt_track
from edgepipe.recipe import ExportConfig
from edgepipe.run import INT8_CPU_ONNX, INT8_TRT_ONNX
from edgepipe.tasks import task_named

os.environ.setdefault("EDGEPIPE_NO_PROGRESS", "1")
TOKENS, WIDTH = 6, 8


class TinyAttention(nn.Module):
    """Linear -> q @ k^T (two activations) -> Softmax -> @ v -> residual Add -> LayerNorm -> Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        attention = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return self.head(self.norm(tokens + attention @ v).mean(1))


@pytest.fixture(scope="module")
def attention(tmp_path_factory) -> SimpleNamespace:
    from edgepipe.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("attention")
    torch.manual_seed(0)
    export_onnx(TinyAttention().eval(), torch.zeros(2, TOKENS, WIDTH), root / "model.onnx", ExportConfig())
    prepared = preprocess(root / "model.onnx", root / "prepared.onnx")
    inputs = np.random.default_rng(0).standard_normal((32, TOKENS, WIDTH)).astype(np.float32)
    calibrate(prepared, ArrayDataReader(inputs, "input"), "minmax", 99.99, root / "ranges.json")
    tracks = {INT8_TRT_ONNX: trt_track(), INT8_CPU_ONNX: cpu_track()}
    quantized = [quantize_track(prepared, root / name, track, "minmax", root / "ranges.json")
                 for name, track in tracks.items()]
    graph = onnx.load(str(prepared)).graph
    constants = {init.name for init in graph.initializer} | {o for n in graph.node if n.op_type == "Constant"
                                                             for o in n.output}
    activation_only = {n.name: n.op_type for n in graph.node if not constants.intersection(n.input)}
    softmax_input = {n.input[0] for n in graph.node if n.op_type == "Softmax"}
    return SimpleNamespace(root=root, prepared=prepared, inputs=inputs, tracks=tracks, quantized=quantized,
                           candidates=quantized_nodes(prepared, quantized), activation_only=activation_only,
                           softmax=next(n.name for n in graph.node if n.op_type == "Softmax"),
                           softmax_producer=next(n.name for n in graph.node if n.op_type == "MatMul"
                                                 and n.output[0] in softmax_input))


def _count(path: Path, op_type: str) -> int:
    return sum(node.op_type == op_type for node in onnx.load(str(path)).graph.node)


def _dequantized_input(path: Path, node_name: str) -> bool:
    """Whether ``node_name`` reads an INT8 tensor (through a DequantizeLinear) in the QDQ graph at ``path``."""
    graph = onnx.load(str(path)).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return any(dequantized.intersection(node.input) for node in graph.node if node.name == node_name)


def test_candidates_include_the_activation_only_nodes(attention):
    names = dict(attention.candidates)
    activation_only = {name: op for name, op in names.items() if name in attention.activation_only}
    # Both activation x activation MatMuls, the Softmax and the residual Add; and the LayerNormalization (its
    # scale and bias are initializers, but it is no Conv/Gemm/MatMul weight layer either).
    assert sorted(activation_only.values()).count("MatMul") == 2
    assert {"Softmax", "Add"} <= set(activation_only.values()) and "LayerNormalization" in names.values()
    assert attention.softmax in names
    for path in attention.quantized:  # and onnxruntime did quantize the Softmax: it is not a guess
        assert _dequantized_input(path, attention.softmax)


@pytest.mark.parametrize("track", [trt_track(), cpu_track()], ids=["trt", "cpu"])
def test_excluding_every_candidate_leaves_no_int8(attention, track, tmp_path):
    full = attention.root / (INT8_TRT_ONNX if track.name == "trt" else INT8_CPU_ONNX)
    assert _count(full, "QuantizeLinear") > 0
    floated = quantize_track(attention.prepared, tmp_path / "float.onnx", track, "minmax",
                             attention.root / "ranges.json", [name for name, _ in attention.candidates])
    assert _count(floated, "QuantizeLinear") == 0 and _count(floated, "DequantizeLinear") == 0


def test_the_proxy_ranks_every_candidate_from_one_pass(attention):
    table = sensitivity.quantization_error_ranking(attention.prepared, attention.quantized, attention.candidates,
                                                   attention.inputs[:sensitivity.PROXY_SAMPLES], "input")
    assert sorted(row["node"] for row in table) == sorted(name for name, _ in attention.candidates)
    measured = [row["sqnr_db"] for row in table if row["sqnr_db"] is not None]
    assert measured == sorted(measured)  # most sensitive (lowest SQNR) first
    softmax = next(row for row in table if row["node"] == attention.softmax)
    assert softmax["sqnr_db"] is not None and np.isfinite(softmax["sqnr_db"])


@pytest.mark.parametrize("exact_limit", [0, 1000], ids=["proxy-ranked", "exactly-ranked"])
def test_fallback_keeps_a_sensitive_activation_only_node_in_float(attention, exact_limit, monkeypatch, tmp_path):
    import shutil

    import edgepipe.quant.scoring as scoring
    import edgepipe.stages.quantize as stage

    monkeypatch.setattr(sensitivity, "EXACT_LIMIT", exact_limit)
    prepared = Path(shutil.copyfile(attention.prepared, tmp_path / "prepared.onnx"))
    out = tmp_path / "out"
    out.mkdir()
    softmax = attention.softmax

    def score(path, split, task):  # quantizing the Softmax is ruinous; nothing else costs anything
        return 0.5 if _dequantized_input(path, softmax) else 1.0

    monkeypatch.setattr(scoring, "score_of", score)
    val = Split(attention.inputs, np.zeros(len(attention.inputs), np.int64))
    judge = scoring.Judge(prepared, "minmax", attention.root / "ranges.json", val, reference_val=1.0, allowed=1.0,
                          task=task_named("classification"))
    fallback = stage._quantize_within_budget(judge, out, attention.tracks)
    assert fallback["needed"] and softmax in fallback["excluded"] and fallback["val_drop_after"] <= 1.0
    assert len(fallback["sensitivity"]) == len(attention.candidates)
    # The answer is a mix the task's own score confirmed, not the proxy's guess.
    assert any(step["excluded"] == fallback["excluded"] and step["drop"] <= 1.0 for step in fallback["steps"])
    if exact_limit:
        # The Softmax's input is also the q @ k MatMul's output, which onnxruntime quantizes for the MatMul too:
        # that tensor is float only when both nodes are; scored alone on the task's metric, those two are found.
        assert sorted(fallback["excluded"]) == sorted([softmax, attention.softmax_producer])
        assert {row["node"] for row in fallback["sensitivity"][:2]} == set(fallback["excluded"])
    else:
        assert "sqnr_db" in fallback["sensitivity"][0]
    for filename in attention.tracks:
        assert not _dequantized_input(out / filename, softmax) and _count(out / filename, "QuantizeLinear") > 0


def test_hundreds_of_candidates_cost_a_logarithmic_number_of_confirmations():
    # 400 nodes as a ViT has; three of them (ranked 1st, 5th and 37th by the proxy) hold all the loss.
    layers = [(f"n{i}", "Add") for i in range(400)]
    harm = {"n0": 3.0, "n4": 2.0, "n36": 1.0}
    confirmations = []

    def probe(only, exclude):
        assert only is None  # the proxy ranked them: no node is scored alone
        confirmations.append(len(exclude))
        return sum(loss for name, loss in harm.items() if name not in exclude)

    table = [{"node": name, "op": op, "sqnr_db": float(i)} for i, (name, op) in enumerate(layers)]
    result = sensitivity.fit_budget(layers, probe, max_drop=0.5, full_drop=6.0, proxy=lambda: table)
    assert result.excluded == [f"n{i}" for i in range(37)] and result.drop == 0.0
    assert confirmations == [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37]  # gallop, then bisect: 12, not 400
    assert [step["excluded"] for step in result.steps[1:]] == [[f"n{i}" for i in range(k)] for k in confirmations]

