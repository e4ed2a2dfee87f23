"""Accuracy-aware fallback: rank the quantized nodes by sensitivity, then keep the most sensitive in floating point.

Candidates are every node onnxruntime quantized (tracks.quantized_nodes), activation-only ones included: a ViT has
hundreds. Ranking them:
- up to EXACT_LIMIT candidates, the textbook definition: the task's validation score lost (top-1 points, PSNR dB)
  when *only that node* is quantized (one quantize_static plus one val pass per node);
- beyond that, a one-pass proxy as onnxruntime's qdq_loss_debug measures it: the signal-to-quantization-noise
  ratio of each quantized tensor (before vs after its QuantizeLinear/DequantizeLinear pair, on a few inputs) and
  of each quantized weight; a node is as sensitive as its worst tensor.
Either way the task's metric decides: prefixes of the ranking are confirmed on the val split (1, 2, 4... nodes in
float, then bisection between the last miss and the first hit), so the answer is a prefix the val score confirmed,
found in O(log n) confirmations instead of one per node.
If even all but one candidate in float miss it, that is a clear failure, not a silent FP32 model labelled INT8.
"""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepipe.errors import EdgepipeError

# (nodes_to_quantize or None for all, nodes_to_exclude) -> the drop in the task's unit (worst track)
DropProbe = Callable[[list[str] | None, list[str]], float]
# () -> ranking rows ({"node", "op", ...}), most sensitive first; called only when the exact ranking is too dear
ProxyRanking = Callable[[], list[dict]]

EXACT_LIMIT = 16  # a small CNN (LeNet: 12 quantized nodes): scoring each alone on val is cheap and sees the task itself
PROXY_SAMPLES = 8  # a ranking, not a score: each SQNR sums over every element of its tensor for all these inputs
PROXY_BATCH = 2  # inputs per run: each run returns every quantized tensor twice (before and after its Q/DQ pair)
TINY = float(np.finfo(float).eps) ** 2  # qdq_loss_debug's floor on a norm, squared: on an energy


@dataclass
class FallbackResult:
    excluded: list[str]
    drop: float
    table: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)


def layer_sensitivity(layers: list[tuple[str, str]], probe: DropProbe) -> list[dict]:
    """One row per quantizable layer: its drop when only it is quantized, most sensitive first."""
    table = [{"node": name, "op": op, "drop_alone": round(probe([name], []), 4)} for name, op in layers]
    return sorted(table, key=lambda row: -row["drop_alone"])


def fit_budget(layers: list[tuple[str, str]], probe: DropProbe, max_drop: float, full_drop: float,
               unit: str = "pts", proxy: ProxyRanking | None = None) -> FallbackResult:
    """Keep the shortest most-sensitive-first prefix in float that is within ``max_drop``; raise when none is."""
    table = proxy() if proxy is not None and len(layers) > EXACT_LIMIT else layer_sensitivity(layers, probe)
    order = [row["node"] for row in table]
    steps = [{"excluded": [], "drop": round(full_drop, 4)}]
    drops: dict[int, float] = {}

    def confirm(count: int) -> bool:
        drops[count] = probe(None, order[:count])
        steps.append({"excluded": order[:count], "drop": round(drops[count], 4)})
        return drops[count] <= max_drop

    # Only mixes that still hold INT8 count: every node in float is the FP32 model, not a quantized one.
    most = len(order) - 1
    missed, met, count = 0, None, 1  # missed: the longest prefix known to miss the budget
    while met is None and missed < most:
        count = min(count, most)
        if confirm(count):
            met = count
        else:
            missed, count = count, count * 2
    if met is None:
        best = min(steps, key=lambda s: s["drop"])
        raise EdgepipeError(
            f"no INT8 mix meets the budget of {max_drop:.2f} {unit}: all layers quantized lose {full_drop:.2f}, "
            f"the best mix that still has INT8 ({len(best['excluded'])} of {len(layers)} layers kept in float) "
            f"loses {best['drop']:.2f}; raise --max-drop, try --method entropy or percentile, or --qat"
        )
    while met - missed > 1:  # the drop falls (roughly) as the prefix grows: bisect for the shortest that meets it
        middle = (missed + met) // 2
        if confirm(middle):
            met = middle
        else:
            missed = middle
    return FallbackResult(order[:met], drops[met], table, steps)


def quantization_error_ranking(float_model: Path, quantized_paths: list[Path], layers: list[tuple[str, str]],
                               inputs: np.ndarray, input_name: str) -> list[dict]:
    """The proxy: each node's worst tensor SQNR (dB, lower = more sensitive) over every track, worst first."""
    feeds = [{input_name: inputs[start:start + PROXY_BATCH]} for start in range(0, len(inputs), PROXY_BATCH)]
    sqnr: dict[str, float] = {}
    for path in quantized_paths:
        for tensor, value in tensor_sqnr(float_model, path, feeds).items():
            sqnr[tensor] = min(value, sqnr.get(tensor, math.inf))
    tensors_of = _node_tensors(float_model)
    table = []
    for name, op in layers:
        measured = [(sqnr[t], t) for t in tensors_of.get(name, ()) if t in sqnr]
        worst = min(measured, default=(None, None))
        # JSON has no infinity: a node quantized without any error reads null, like one not measured (none expected)
        table.append({"node": name, "op": op, "tensor": worst[1],
                      "sqnr_db": round(worst[0], 2) if worst[0] is not None and math.isfinite(worst[0]) else None})
    # Worst first; ties keep graph order.
    return sorted(table, key=lambda row: math.inf if row["sqnr_db"] is None else row["sqnr_db"])


def tensor_sqnr(float_model: Path, quantized: Path, feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, float]:
    """SQNR (dB) of every activation and weight a QDQ graph quantizes: activations through onnxruntime's
    qdq_loss_debug (augment the graph, collect, match each tensor before and after its Q/DQ pair), one feed at a
    time (a ViT's every intermediate tensor for many samples does not fit in memory), energies summed over feeds."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from edgepipe.quant.tracks import quiet_onnxruntime

    signal: dict[str, float] = defaultdict(float)
    noise: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory(prefix="sqnr-", dir=Path(quantized).parent) as scratch, quiet_onnxruntime():
        augmented = str(Path(scratch) / "augmented.onnx")
        # Only what the Q/DQ pairs see: a QuantizeLinear's float input and a DequantizeLinear's float output.
        modify_model_output_intermediate_tensors(str(quantized), augmented, ["QuantizeLinear", "DequantizeLinear"])
        for feed in feeds:
            matched = create_activation_matching(collect_activations(augmented, [feed]))
            for tensor, pair in matched.items():
                before = np.asarray(pair["pre_qdq"][0], np.float64)
                after = np.asarray(pair["post_qdq"][0], np.float64)
                signal[tensor] += float(np.square(before).sum())
                noise[tensor] += float(np.square(before - after).sum())
    for weight, (weight_signal, weight_noise) in _weight_energies(float_model, quantized).items():
        signal[weight], noise[weight] = weight_signal, weight_noise
    # qdq_loss_debug's SQNR, from energies; a tensor quantized without error (an all-zero bias) is perfect, not 0 dB.
    return {tensor: math.inf if noise[tensor] == 0 else 10 * math.log10(max(signal[tensor], TINY) / noise[tensor])
            for tensor in signal}


def _weight_energies(float_model: Path, quantized: Path) -> dict[str, tuple[float, float]]:
    """(signal, noise) energy of each quantized initializer. Not qdq_loss_debug's create_weight_matching: it
    subtracts a uint8 zero-point in uint8 (wrapping around: the CPU track's activation-typed initializers, e.g. a
    ViT's pos_embed, read as -14 dB) and its compute_weight_error fails on a 0-d weight."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization.quant_utils import TENSOR_NAME_QUANT_SUFFIX

    float_graph = onnx.load(str(float_model), load_external_data=False).graph
    float_weights = {init.name: init for init in float_graph.initializer}
    graph = onnx.load(str(quantized)).graph
    constants = {init.name: init for init in graph.initializer}
    energies = {}
    for node in graph.node:
        name = node.input[0].removesuffix(TENSOR_NAME_QUANT_SUFFIX)
        # A shared initializer that onnxruntime duplicated (name + index) has no float twin by name: skipped.
        if node.op_type != "DequantizeLinear" or node.input[0] not in constants or name not in float_weights:
            continue
        values, scale = (numpy_helper.to_array(constants[n]).astype(np.float64) for n in node.input[:2])
        zero_point = (numpy_helper.to_array(constants[node.input[2]]).astype(np.float64)
                      if len(node.input) > 2 and node.input[2] in constants else np.zeros_like(scale))
        if scale.size > 1:  # per channel, along ``axis`` (ONNX's default 1)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * values.ndim
            shape[axis] = -1
            scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
        original = numpy_helper.to_array(float_weights[name]).astype(np.float64)
        energies[name] = (float(np.square(original).sum()),
                          float(np.square(original - (values - zero_point) * scale).sum()))
    return energies


def _node_tensors(model_path: Path) -> dict[str, list[str]]:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return {node.name: [*node.input, *node.output] for node in model.graph.node}
