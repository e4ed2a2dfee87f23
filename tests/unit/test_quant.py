"""Quantize stage unit tests on a tiny conv net (synthetic data, torch.onnx.export(dynamo=False)): seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers.graphs import activation_scales
from torch import nn

from edgepipe.artifacts import add_artifact, new_manifest, write_manifest
from edgepipe.data import load_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.quant.calibration import CalibrationSet, check_calibration_data
from edgepipe.quant.tracks import load_ranges, qdq_parameters
from edgepipe.recipe import DatasetConfig, QuantizeConfig
from edgepipe.trt import calib_cache as trt_cache

DATASET = DatasetConfig(name="synthetic", samples=400, shape=(1, 12, 12), num_classes=4)
# The synthetic set is tensors; the manifest claims image preprocessing so image-folder calibration can be tested.
IMAGE_PREPROCESSING = {"kind": "image", "layout": "NCHW", "channels": 1, "size": [12, 12], "scale": 1 / 255.0,
                       "mean": [0.5], "std": [0.5]}


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 4))


def train_briefly(model: nn.Module, x: np.ndarray, y: np.ndarray, steps: int = 60) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(steps):
        index = torch.arange(step * 32, step * 32 + 32) % len(ys)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xs[index]), ys[index]).backward()
        optimizer.step()
    return model.eval()


def export_onnx(model: nn.Module, path: Path, *, dynamic: bool = True) -> Path:
    example = torch.zeros(2, 1, 12, 12)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def make_export_dir(root: Path, *, seed_offset: int = 0, dynamic: bool = True) -> Path:
    """root/export with model.onnx and a manifest carrying the dataset record, like the export stage writes."""
    dataset = load_dataset(DATASET)
    model = tiny_net()
    if seed_offset:
        with torch.no_grad():
            model[0].weight.mul_(1.0 + 0.05 * seed_offset)
    train_briefly(model, dataset.train.x, dataset.train.y)
    export = root / "export"
    export.mkdir(parents=True)
    export_onnx(model, export / "model.onnx", dynamic=dynamic)
    manifest = new_manifest("export", {"opset": 17}, {"model": "test"})
    manifest.dataset = {"config": DATASET.model_dump(mode="json"), "fingerprint": dataset.fingerprint(),
                           "preprocessing": IMAGE_PREPROCESSING}
    add_artifact(manifest, export, "model.onnx", name="onnx-fp32", fmt="onnx", precision="fp32")
    write_manifest(export, manifest)
    return root


os.environ.setdefault("EDGEPIPE_NO_PROGRESS", "1")


def write_calibration(path: Path, split: str = "train", samples: int = 64, seed: int = 0) -> Path:
    path.write_text(f"split: {split}\nsamples: {samples}\nseed: {seed}\n")
    return path


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from edgepipe.stages.quantize import quantize

    root = make_export_dir(tmp_path_factory.mktemp("run"))
    calib = write_calibration(root / "calib.yaml")
    out = quantize(root, root / "quantize", QuantizeConfig(calibration=str(calib), qat=False), speed=False)
    return root, out, json.loads((out / "manifest.json").read_text())


# ---------------------------------------------------------------------------------------------- the cache


def test_cache_round_trips_to_the_same_scales(tmp_path):
    scales = {"input": 0.0157, "conv_out": 3.2e-3, "logits": 0.25, "tiny": 1e-7}
    path = trt_cache.write_cache(tmp_path / "trt.calib.cache", scales, "8.6.1")
    header, parsed = trt_cache.parse_cache(path)
    assert header == "TRT-8601-EntropyCalibration2"
    assert parsed.keys() == scales.keys()
    for name, scale in scales.items():
        assert parsed[name] == np.float32(scale)  # exact float32 bits, not approximately
    lines = path.read_text().splitlines()
    assert lines[1:] == sorted(lines[1:])  # sorted by tensor name: the same scales give the same bytes
    assert f"input: {np.array(0.0157, '>f4').tobytes().hex()}" in lines
    assert all(len(line.split(": ")[1]) == 8 for line in lines[1:])


def test_cache_header_version_numbers_and_the_build_calibrator_accepts_it(tmp_path):
    from edgepipe.device.runtime import read_cache

    assert trt_cache.cache_header("8.2") == "TRT-8200-EntropyCalibration2"
    assert trt_cache.cache_header("10.3.0") == "TRT-100300-EntropyCalibration2"
    path = trt_cache.write_cache(tmp_path / "c", {"x": 0.5}, "10.3")
    assert read_cache(path).startswith(b"TRT-100300-EntropyCalibration2\n")


@pytest.mark.parametrize("text", ["TRT-8601-MinMaxCalibration\nx: 3c010a14\n", "TRT-8601-EntropyCalibration2\nx 3c\n",
                                  "TRT-8601-EntropyCalibration2\nx: zz\n", ""])
def test_malformed_cache_is_a_user_error(tmp_path, text):
    (tmp_path / "c").write_text(text)
    with pytest.raises(EdgepipeError):
        trt_cache.parse_cache(tmp_path / "c")


def test_non_positive_scale_is_refused(tmp_path):
    with pytest.raises(EdgepipeError, match="positive"):
        trt_cache.write_cache(tmp_path / "c", {"x": 0.0}, "8.6")


# ---------------------------------------------------------------------------------------------- the stage


def test_artifacts_and_manifest(quantized):
    root, out, manifest = quantized
    names = {a["name"]: a for a in manifest["artifacts"]}
    assert set(names) == {"int8-cpu", "int8-trt", "fp16"}
    assert names["int8-cpu"]["precision"] == names["int8-trt"]["precision"] == "int8"
    assert names["fp16"]["precision"] == "fp16"
    for filename in ("model.int8.trt.onnx", "model.int8.cpu.onnx", "model.fp16.onnx", "trt.calib.cache",
                     "calibration.ranges.json"):
        assert (out / filename).is_file(), filename
    assert manifest["parents"]["onnx"] == manifest["calibration_cache"]["model_sha256"]
    assert manifest["parents"]["calibration_set"] == manifest["calibration"]["sha256"]
    assert manifest["calibration"]["split"] == "train" and manifest["calibration"]["samples"] == 64
    for row in manifest["metrics"]["artifacts"]:
        assert row["size_ratio"] < 0.8  # an 11 KB net: Q/DQ node overhead dominates; real floors in integration
        assert row["drop_val"] <= 2.0  # the tiny net on synthetic data: INT8 must not wreck it


def test_trt_qdq_is_symmetric_int8_with_per_channel_weights(quantized):
    _, out, _ = quantized
    path = out / "model.int8.trt.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    entries = qdq_parameters(path)
    assert entries, "no Q/DQ nodes at all"
    for entry in entries:
        assert (np.asarray(entry["scale"]) > 0).all(), entry["node"]
        assert entry["zero_point"] is not None and entry["zero_point"].dtype == np.int8, entry["node"]
        assert not np.any(entry["zero_point"]), entry["node"]
    model = onnx.load(str(path))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    weight_dq = [e for e in entries if e["op"] == "DequantizeLinear" and e["weight"]]
    assert weight_dq, "weights are not quantized"
    per_channel = [e for e in weight_dq if np.asarray(e["scale"]).size > 1]
    assert per_channel and all(e["axis"] in (0, None) for e in per_channel if e["input"].startswith("0."))
    conv_dq = [e for e in weight_dq if any(w.startswith(e["input"].removesuffix("_quantized")) for w in conv_weights)
               or e["node"].replace("_DequantizeLinear", "") in conv_weights]
    assert all(np.asarray(e["scale"]).size == 8 for e in conv_dq)  # one scale per output channel


def test_cpu_track_is_u8_activations_s8_weights(quantized):
    _, out, _ = quantized
    entries = qdq_parameters(out / "model.int8.cpu.onnx")
    activations = [e for e in entries if not e["weight"] and e["op"] == "QuantizeLinear"]
    weights = [e for e in entries if e["weight"] and e["zero_point"] is not None and e["zero_point"].dtype != np.int32]
    assert activations and all(e["zero_point"].dtype == np.uint8 for e in activations)
    assert weights and all(e["zero_point"].dtype == np.int8 for e in weights)


def test_both_tracks_and_the_cache_come_from_one_calibration(quantized):
    _, out, manifest = quantized
    ranges = load_ranges(out / "calibration.ranges.json")
    _, cache = trt_cache.parse_cache(out / "trt.calib.cache")
    assert cache == trt_cache.scales_from_ranges(ranges)
    trt_scales = activation_scales(out / "model.int8.trt.onnx")
    shared = set(trt_scales) & set(cache)
    assert shared, "the cache names none of the tensors the QDQ graph quantizes"
    for name in shared:
        assert trt_scales[name] == pytest.approx(cache[name], rel=1e-6), name
    cpu_scales = activation_scales(out / "model.int8.cpu.onnx")
    for name in set(cpu_scales) & set(ranges):
        low, high = min(ranges[name][0], 0.0), max(ranges[name][1], 0.0)
        assert cpu_scales[name] == pytest.approx((high - low) / 255.0, rel=1e-5), name
    assert manifest["calibration_cache"]["sha256"] == __import__("hashlib").sha256(
        (out / "trt.calib.cache").read_bytes()).hexdigest()


def test_fp16_graph_keeps_fp32_io(quantized):
    _, out, _ = quantized
    model = onnx.load(str(out / "model.fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)


def test_fp16_overflow_is_reported_and_kept_fp32(quantized, tmp_path):
    from edgepipe.quant.fp16 import convert_fp16, overflow_report

    root, out, _ = quantized
    source = root / "export" / "model.onnx"
    ranges = load_ranges(out / "calibration.ranges.json")
    producer = next(n for n in onnx.load(str(source)).graph.node if n.op_type == "Conv")
    ranges[producer.output[0]] = (-1.0, 1.0e6)
    report = overflow_report(source, ranges)
    assert report["activations_over_fp16_max"] == [{"tensor": producer.output[0], "max_abs": 1.0e6}]
    assert report["nodes_kept_fp32"] == [producer.name]
    converted = onnx.load(str(convert_fp16(source, tmp_path / "m.onnx", report["nodes_kept_fp32"])))
    kept = next(n for n in converted.graph.node if n.name == producer.name)
    casts_in = {n.output[0] for n in converted.graph.node if n.op_type == "Cast"}
    assert any(name in casts_in for name in kept.input)  # fed through a Cast back to FP32


def test_reuse_is_keyed_by_model_and_calibration_set(quantized, tmp_path):
    from edgepipe.stages.quantize import quantize

    root = make_export_dir(tmp_path / "a")
    calib = write_calibration(tmp_path / "calib.yaml")
    config = QuantizeConfig(calibration=str(calib), fp16=False)
    out = quantize(root, root / "quantize", config, speed=False)
    first = json.loads((out / "manifest.json").read_text())
    stamp = (out / "manifest.json").stat().st_mtime_ns
    quantize(root, root / "quantize", config, reuse=True, speed=False)
    assert (out / "manifest.json").stat().st_mtime_ns == stamp  # up to date: nothing redone

    # Another model in the same run: the old ranges and cache are stale and must not be reused.
    other = make_export_dir(tmp_path / "b", seed_offset=3)
    (root / "export" / "model.onnx").write_bytes((other / "export" / "model.onnx").read_bytes())
    quantize(root, root / "quantize", config, reuse=True, speed=False)
    second = json.loads((out / "manifest.json").read_text())
    assert second["calibration_cache"]["model_sha256"] != first["calibration_cache"]["model_sha256"]
    assert second["calibration_cache"]["ranges_key"] != first["calibration_cache"]["ranges_key"]
    assert (out / "trt.calib.cache").read_text() != "" and second["calibration_cache"]["sha256"] != \
        first["calibration_cache"]["sha256"]
    with pytest.raises(EdgepipeError, match="stale"):
        trt_cache.check_cache_is_fresh(first["calibration_cache"], second["calibration_cache"]["model_sha256"])

    # Another calibration set, same model: recalibrated too.
    write_calibration(calib, seed=7)
    quantize(root, root / "quantize", config, reuse=True, speed=False)
    third = json.loads((out / "manifest.json").read_text())
    assert third["calibration"]["sha256"] != second["calibration"]["sha256"]
    assert third["calibration_cache"]["ranges_key"] != second["calibration_cache"]["ranges_key"]
    with pytest.raises(EdgepipeError, match="another calibration set"):
        trt_cache.check_cache_is_fresh(second["calibration_cache"], third["calibration_cache"]["model_sha256"],
                                       third["calibration"]["sha256"])


# ---------------------------------------------------------------------------------------------- calibration data


def test_calibration_data_checks():
    good = CalibrationSet("s", np.zeros((4, 1, 12, 12), np.float32))
    check_calibration_data(good, (None, 1, 12, 12), "s")
    with pytest.raises(EdgepipeError, match="empty"):
        check_calibration_data(CalibrationSet("s", np.zeros((0, 1, 12, 12), np.float32)), (None, 1, 12, 12), "s")
    with pytest.raises(EdgepipeError, match="shape"):
        check_calibration_data(CalibrationSet("s", np.zeros((4, 1, 10, 10), np.float32)), (None, 1, 12, 12), "s")
    bad = np.zeros((4, 1, 12, 12), np.float32)
    bad[2, 0, 3, 3] = np.nan
    with pytest.raises(EdgepipeError, match="sample 2 holds NaN or Inf"):
        check_calibration_data(CalibrationSet("s", bad), (None, 1, 12, 12), "s")


def test_calibration_hash_tracks_content():
    a = CalibrationSet("s", np.zeros((4, 1, 2, 2), np.float32), {"split": "train"})
    b = CalibrationSet("s", np.ones((4, 1, 2, 2), np.float32), {"split": "train"})
    assert a.sha256 != b.sha256 and a.sha256 == CalibrationSet("s", a.data.copy(), {"split": "train"}).sha256


def test_shipped_calibration_sets_are_valid():
    from edgepipe.quant.calibration import REPO_ROOT, read_definition

    files = sorted((REPO_ROOT / "calibration").glob("*.yaml"))
    assert files
    for path in files:
        assert read_definition(path)["split"] in ("train", "val")


# ---------------------------------------------------------------------------------------------- fallback, QAT


def test_fallback_excludes_most_sensitive_first_until_budget_holds():
    from edgepipe.quant.sensitivity import fit_budget

    harm = {"a": 0.1, "b": 1.5, "c": 0.6}

    def probe(only, exclude):
        quantized_layers = only if only is not None else [n for n in harm if n not in exclude]
        return sum(harm[n] for n in quantized_layers)

    result = fit_budget([(n, "Conv") for n in harm], probe, max_drop=0.7, full_drop=2.2)
    assert [row["node"] for row in result.table] == ["b", "c", "a"]
    assert result.excluded == ["b"] and result.drop == pytest.approx(0.7)
    # The all-float "mix" (0.00) is the FP32 model: the best one that still has INT8 is named instead.
    with pytest.raises(EdgepipeError, match=r"no INT8 mix meets the budget of 0.05 pts.*the best mix that "
                                            r"still has INT8 \(2 of 3 layers kept in float\) loses 0.10"):
        fit_budget([(n, "Conv") for n in harm], probe, max_drop=0.05, full_drop=2.2)


def test_stage_fallback_reports_table_and_exclusions(quantized, monkeypatch, tmp_path):
    import edgepipe.quant.scoring as scoring
    import edgepipe.stages.quantize as stage

    root = make_export_dir(tmp_path)
    calib = write_calibration(tmp_path / "calib.yaml")
    real = scoring.score_of
    # Make quantizing the first Conv look ruinous, so the fallback has to keep exactly it in float.
    first_conv = next(n.name for n in onnx.load(str(root / "export" / "model.onnx")).graph.node if n.op_type == "Conv")

    def score(path, split, task):
        model = onnx.load(str(path))
        weight_of_first = next((n.input[1] for n in model.graph.node if n.name == first_conv), "")
        penalty = 0.5 if weight_of_first.endswith("_DequantizeLinear_Output") else 0.0
        return real(path, split, task) - penalty

    monkeypatch.setattr(scoring, "score_of", score)
    out = stage.quantize(root, root / "quantize", QuantizeConfig(calibration=str(calib), fp16=False, max_drop=5.0),
                         speed=False)
    fallback = json.loads((out / "manifest.json").read_text())["metrics"]["fallback"]
    assert fallback["needed"] and fallback["excluded"] == [first_conv]
    # Every node onnxruntime quantized is a candidate: the 3 weight layers, both Relus and the Flatten.
    assert fallback["sensitivity"][0]["node"] == first_conv and len(fallback["sensitivity"]) == 6


def test_qat_fake_quant_uses_a_straight_through_gradient_and_comes_off_cleanly():
    from edgepipe.quant.qat import attach_fake_quant, detach_fake_quant

    model = tiny_net().train()
    x = torch.randn(4, 1, 12, 12)
    reference = model(x).detach()
    handles = attach_fake_quant(model)
    output = model(x)
    assert not torch.equal(output.detach(), reference)  # quantization noise is really there
    output.sum().backward()
    grad = model[0].parametrizations.weight.original.grad
    assert grad is not None and grad.abs().sum() > 0
    detach_fake_quant(model, handles)
    assert type(model[0].weight) is torch.nn.Parameter and not hasattr(model[0], "qat_amax")
    assert torch.allclose(model(x), reference)


# ---------------------------------------------------------------------------- the CPU track's speed fallback


def _scripted_timer(fp32_ms: float):
    """Times from graph structure instead of a clock: the FP32 reference takes ``fp32_ms``; a quantized graph
    takes 10 ms minus 3 ms per layer left in float (its weight is a plain initializer, not a DequantizeLinear)."""
    def timer(batch, threads, **_):
        def time_models(models):
            return {label: [fp32_ms if label == "fp32" else 10.0 - 3.0 * _float_layers(path)] * 3
                    for label, path in models.items()}
        return time_models
    return timer


def _scripted_profiler(batch, threads, nodes, **_):
    """Every weight layer's kernel: 4 ms in int8, 1 ms in float; everything else the same in both."""
    from edgepipe.quant.speed import GRAPH

    def profile(models):
        weighted = [name for name, op, _, _ in nodes if op in ("Conv", "Gemm")]
        out = {}
        for label in models:
            out[label] = {GRAPH: [10.0] * 3, **{name: [4.0 if label == "int8" else 1.0] * 3 for name in weighted}}
        return out
    return profile


def _float_layers(path: Path) -> int:
    graph = onnx.load(str(path)).graph
    initializers = {init.name for init in graph.initializer}
    return sum(node.op_type in ("Conv", "Gemm") and node.input[1] in initializers for node in graph.node)


@pytest.mark.parametrize(("fp32_ms", "kept"), [(5.0, True), (0.5, False)])
def test_cpu_track_keeps_float_layers_only_when_the_mix_beats_fp32(tmp_path, monkeypatch, fp32_ms, kept):
    from edgepipe.quant import speed
    from edgepipe.stages.quantize import quantize

    monkeypatch.setattr(speed, "ort_timer", _scripted_timer(fp32_ms))
    monkeypatch.setattr(speed, "ort_profiler", _scripted_profiler)
    root = make_export_dir(tmp_path)
    calib = write_calibration(root / "calib.yaml")
    out = quantize(root, root / "quantize", QuantizeConfig(calibration=str(calib), qat=False, fp16=False,
                                                           speed_runtime="onnxruntime"))
    summary = json.loads((out / "manifest.json").read_text())["metrics"]["cpu_speed_fallback"]
    weighted = [row for row in summary["table"] if row["op"] in ("Conv", "Gemm")]
    assert len(weighted) == 3 and all(row["gain"] == 0.75 for row in weighted)  # each kernel: 3 ms faster
    assert len(summary["confirmations"]) == 1  # one whole-graph check of all three in float
    if kept:  # the all-float mix takes 1 ms, FP32 5 ms: the mix is the int8-cpu artifact
        assert summary["kept_float"] and _float_layers(out / "model.int8.cpu.onnx") == 3
    else:  # FP32 (0.5 ms) beats every mix: INT8 does not pay, the fully quantized graph stays
        assert summary["kept_float"] == [] and "faster than FP32" in summary["reverted"]
        assert _float_layers(out / "model.int8.cpu.onnx") == 0
    assert _float_layers(out / "model.int8.trt.onnx") == 0  # the TensorRT track is never touched


def test_the_speed_decision_is_kept_and_a_rerun_makes_the_same_bytes(tmp_path, monkeypatch):
    """A measured CPU-track decision is reused on this machine (byte-identical artifact, no timing at all);
    --retime measures again; the manifest says which."""
    from edgepipe.cache import DecisionCache
    from edgepipe.quant import speed
    from edgepipe.quant.speed_fallback import SPEED_DECISIONS
    from edgepipe.stages.quantize import quantize

    calls = []

    def timer(batch, threads, **_):
        calls.append(len(batch))
        return _scripted_timer(5.0)(batch, threads)

    monkeypatch.setattr(speed, "ort_timer", timer)
    monkeypatch.setattr(speed, "ort_profiler", _scripted_profiler)
    root = make_export_dir(tmp_path)
    calib = write_calibration(root / "calib.yaml")
    config = QuantizeConfig(calibration=str(calib), qat=False, fp16=False, speed_runtime="onnxruntime")
    first = quantize(root, root / "q1", config)
    measured = json.loads((first / "manifest.json").read_text())["metrics"]["cpu_speed_fallback"]
    assert measured["decision"] == "measured" and measured["kept_float"] and calls
    assert len(DecisionCache(SPEED_DECISIONS)._entries()) == 1

    calls.clear()
    monkeypatch.setattr(speed, "ort_timer", _scripted_timer(0.5))  # a machine in another mood: would revert
    second = quantize(root, root / "q2", config)
    reused = json.loads((second / "manifest.json").read_text())["metrics"]["cpu_speed_fallback"]
    assert reused["decision"] == "reused" and reused["kept_float"] == measured["kept_float"]
    assert (second / "model.int8.cpu.onnx").read_bytes() == (first / "model.int8.cpu.onnx").read_bytes()

    third = quantize(root, root / "q3", config.model_copy(update={"retime": True}))
    retimed = json.loads((third / "manifest.json").read_text())["metrics"]["cpu_speed_fallback"]
    assert retimed["decision"] == "retimed" and retimed["kept_float"] == []  # measured again, this time FP32 wins
    assert "faster than FP32" in retimed["reverted"]


def test_the_speed_fallback_measures_on_the_runtime_that_runs_the_int8_graph_fastest(tmp_path, monkeypatch):
    """auto: the all-int8 graph is timed on every installed CPU runtime; the layers are then profiled and the mix
    confirmed on the fastest (here OpenVINO, scripted), the artifact table is timed there too, and the manifest
    and the decision cache record it (a decision made for onnxruntime is not reused for OpenVINO)."""
    from edgepipe.cache import DecisionCache
    from edgepipe.quant import speed
    from edgepipe.quant.speed_fallback import SPEED_DECISIONS
    from edgepipe.stages.quantize import quantize

    pytest.importorskip("openvino")
    picked = []

    def fastest(model, runtimes, batch, threads, **_):
        picked.append(list(runtimes))
        return "openvino", {"onnxruntime": [9.0, 9.0, 9.0], "openvino": [4.0, 4.0, 4.0]}

    monkeypatch.setattr(speed, "fastest_runtime", fastest)
    monkeypatch.setattr(speed, "ov_timer", _scripted_timer(5.0))
    monkeypatch.setattr(speed, "ov_profiler", _scripted_profiler)
    monkeypatch.setattr(speed, "ort_timer", None)  # onnxruntime must not be what measures
    monkeypatch.setattr(speed, "ort_profiler", None)
    root = make_export_dir(tmp_path)
    calib = write_calibration(root / "calib.yaml")
    out = quantize(root, root / "quantize", QuantizeConfig(calibration=str(calib), qat=False, fp16=False))
    metrics = json.loads((out / "manifest.json").read_text())["metrics"]
    summary = metrics["cpu_speed_fallback"]
    assert picked == [["onnxruntime", "openvino"]]
    assert summary["runtime"] == "openvino" and summary["runtime_rounds_ms"]["openvino"] == [4.0, 4.0, 4.0]
    assert summary["kept_float"] and _float_layers(out / "model.int8.cpu.onnx") == 3
    assert {row["runtime"] for row in metrics["speed"].values()} == {"openvino"}
    assert len(DecisionCache(SPEED_DECISIONS)._entries()) == 1

    picked.clear()
    monkeypatch.setattr(speed, "ov_timer", _scripted_timer(0.5))  # another mood: would revert, were it measured
    again = quantize(root, root / "again", QuantizeConfig(calibration=str(calib), qat=False, fp16=False))
    reused = json.loads((again / "manifest.json").read_text())["metrics"]["cpu_speed_fallback"]
    assert picked == [] and reused["decision"] == "reused" and reused["runtime"] == "openvino"
    assert (again / "model.int8.cpu.onnx").read_bytes() == (out / "model.int8.cpu.onnx").read_bytes()

    monkeypatch.setattr(speed, "ort_timer", _scripted_timer(5.0))
    monkeypatch.setattr(speed, "ort_profiler", _scripted_profiler)
    quantize(root, root / "q2", QuantizeConfig(calibration=str(calib), qat=False, fp16=False,
                                               speed_runtime="onnxruntime"))
    assert len(DecisionCache(SPEED_DECISIONS)._entries()) == 2  # another runtime set: measured, not reused


def test_nodes_the_user_keeps_in_float_stay_float_in_both_tracks(tmp_path):
    from edgepipe.quant.tracks import graph_nodes
    from edgepipe.stages.quantize import quantize

    root = make_export_dir(tmp_path)
    calib = write_calibration(root / "calib.yaml")
    first_conv = next(name for name, op, *_ in graph_nodes(root / "export" / "model.onnx") if op == "Conv")
    config = QuantizeConfig(calibration=str(calib), qat=False, fp16=False, cpu_speed_fallback=False,
                            keep_float=[first_conv])
    out = quantize(root, root / "quantize", config)
    assert _float_layers(out / "model.int8.cpu.onnx") == _float_layers(out / "model.int8.trt.onnx") == 1
    fallback = json.loads((out / "manifest.json").read_text())["metrics"]["fallback"]
    assert fallback["kept_float_by_user"] == [first_conv] and first_conv in fallback["excluded"]
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(EdgepipeError, match=rf"keep_float '{first_conv}x': no node of that name .*closest: "
                                            rf"{first_conv}") as info:
        quantize(root, root / "q2", config.model_copy(update={"keep_float": [first_conv + "x"]}))
    assert "\n" not in str(info.value) and sorted(p.name for p in root.iterdir()) == before


def test_cache_round_trips_a_dead_tensor_and_odd_names(tmp_path):
    """A tensor constant on the calibration set (a dead ReLU: range 0..0) and names with spaces, unicode or
    characters str.splitlines() breaks at: what is read back equals what was written, bit for bit."""
    ranges = {"relu_dead": (0.0, 0.0), "conv 1/out": (-1.5, 2.25), "ünïcode": (0.0, 0.3), "a\x1cb": (-0.1, 0.1),
              "tiny": (0.0, 1e-30)}
    scales = trt_cache.scales_from_ranges(ranges)
    path = trt_cache.write_cache(tmp_path / "c", scales, "10.3")
    header, parsed = trt_cache.parse_cache(path)
    assert parsed == scales and header == "TRT-100300-EntropyCalibration2"
    assert scales["relu_dead"] == np.float32(1 / 127)
