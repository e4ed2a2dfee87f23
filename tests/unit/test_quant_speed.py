"""The CPU track's latency-aware float fallback (quant/speed.py): scripted profiles and clocks instead of timings,
and the profiler's kernel attribution on a real onnxruntime profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepipe.quant.speed import GRAPH, attribute_kernels, keep_float_where_faster

LAYERS = [("stem", "Conv"), ("conv1", "Conv"), ("mul", "Mul"), ("fc", "Gemm")]
FLOAT = Path("float")


def _model(floats: set[str]) -> Path:
    return Path("+".join(sorted(floats)) or "all-int8")


def _floats(path: Path) -> set[str]:
    return set() if path.name == "all-int8" else set(path.name.split("+"))


def _scripted(kernel_int8: dict[str, float], kernel_float: dict[str, float], island: dict[str, float] | None = None,
              rounds: int = 3):
    """A kernel costs its precision's time; the whole graph is their sum plus ``island[layer]`` per float layer
    (the QuantizeLinear/DequantizeLinear a float island adds, which the per-kernel profile cannot see)."""
    island = island or {}
    built: list[list[str]] = []
    timed: list[dict[str, Path]] = []

    def build(excluded: list[str]) -> Path:
        built.append(list(excluded))
        return _model(set(excluded))

    def profile(models: dict[str, Path]) -> dict[str, dict[str, list[float]]]:
        out = {}
        for label, path in models.items():
            costs = kernel_float if path == FLOAT else {n: kernel_float[n] if n in _floats(path) else kernel_int8[n]
                                                        for n in kernel_int8}
            out[label] = {GRAPH: [sum(costs.values())] * rounds, **{n: [c] * rounds for n, c in costs.items()}}
        return out

    def time_models(models: dict[str, Path]) -> dict[str, list[float]]:
        timed.append(dict(models))
        return {label: [sum(kernel_float[n] + island.get(n, 0.0) if n in _floats(path) else kernel_int8[n]
                            for n in kernel_int8)] * rounds for label, path in models.items()}

    return build, profile, time_models, built, timed


def test_keeps_the_layers_whose_float_kernel_is_clearly_faster_after_one_whole_graph_check() -> None:
    build, profile, time_models, built, timed = _scripted(
        {"stem": 5.0, "conv1": 2.0, "mul": 4.0, "fc": 1.0}, {"stem": 1.0, "conv1": 4.0, "mul": 0.5, "fc": 0.99})
    found = keep_float_where_faster(LAYERS, [], FLOAT, build, profile, time_models)
    assert found.kept_float == ["stem", "mul"]  # graph order
    assert found.model == Path("mul+stem")
    rows = {row["node"]: row for row in found.table}
    assert rows["stem"]["int8_ms"] == 5.0 and rows["stem"]["float_ms"] == 1.0 and rows["stem"]["kept_float"]
    assert not rows["conv1"]["kept_float"] and not rows["fc"]["kept_float"]  # 1 % is noise, not a reason
    assert len(timed) == 1 and found.confirmations[0]["faster"]  # one profile, one confirmation: not one per layer
    assert len(built) == 2


def test_a_float_island_that_costs_more_than_it_saves_is_tried_smaller_then_dropped() -> None:
    """Per kernel, both look faster in float; on the whole graph the Q/DQ around conv1's island costs more than its
    kernel saves: the mix of both is 7.5 % faster (not 8 %), the better half alone 10 %."""
    build, profile, time_models, _, timed = _scripted(
        {"stem": 5.0, "conv1": 3.0, "mul": 6.0, "fc": 6.0}, {"stem": 2.5, "conv1": 2.0, "mul": 6.0, "fc": 6.0},
        island={"stem": 0.5, "conv1": 1.5})
    found = keep_float_where_faster(LAYERS, [], FLOAT, build, profile, time_models)
    assert found.kept_float == ["stem"]
    assert [c["float"] for c in found.confirmations] == [["stem", "conv1"], ["stem"]]
    assert [c["faster"] for c in found.confirmations] == [False, True]
    assert len(timed) == 2


def test_layers_already_in_float_for_accuracy_are_not_probed_again() -> None:
    build, profile, time_models, built, _ = _scripted(
        {"stem": 5.0, "conv1": 2.0, "mul": 1.0, "fc": 1.0}, {"stem": 1.0, "conv1": 4.0, "mul": 1.0, "fc": 1.0})
    found = keep_float_where_faster(LAYERS, ["conv1"], FLOAT, build, profile, time_models)
    assert [row["node"] for row in found.table] == ["stem", "mul", "fc"]
    assert found.kept_float == ["stem"] and found.model == Path("conv1+stem")
    assert built[0] == ["conv1"]


def test_nothing_kept_and_nothing_timed_when_int8_wins_everywhere() -> None:
    build, profile, time_models, _, timed = _scripted(
        {"stem": 1.0, "conv1": 1.0, "mul": 1.0, "fc": 1.0}, {"stem": 3.0, "conv1": 3.0, "mul": 3.0, "fc": 3.0})
    found = keep_float_where_faster(LAYERS, [], FLOAT, build, profile, time_models)
    assert found.kept_float == [] and found.model == Path("all-int8") and timed == []


def test_one_lucky_round_is_not_evidence() -> None:
    """The float kernel wins by 40 % on the median but loses one paired round (a slow phase): int8 stays."""
    def profile(models):
        return {"int8": {GRAPH: [20.0] * 3, "stem": [10.0, 10.0, 4.0]}, "float": {GRAPH: [20.0] * 3, "stem": [6.0] * 3}}

    found = keep_float_where_faster(LAYERS[:1], [], FLOAT, _model_builder, profile, _never_timed)
    assert found.kept_float == [] and found.model == Path("all-int8")
    row = found.table[0]
    assert row["gain"] == 0.4 and row["worst_round_gain"] == -0.5 and not row["kept_float"]


def test_a_node_with_no_kernel_of_its_own_stays_int8_and_says_why() -> None:
    def profile(models):  # a Relu folded into its QDQ pair in int8, fused into the conv in float
        return {"int8": {GRAPH: [5.0] * 3, "stem": [4.0] * 3}, "float": {GRAPH: [2.0] * 3, "stem": [1.0] * 3}}

    found = keep_float_where_faster([("relu", "Relu")], [], FLOAT, _model_builder, profile, _never_timed)
    assert found.kept_float == [] and "no kernel of its own" in found.table[0]["note"]


def _model_builder(excluded: list[str]) -> Path:
    return _model(set(excluded))


def _never_timed(models):
    raise AssertionError("no candidate, so no whole-graph timing")


def test_kernels_are_traced_to_their_nodes_as_onnxruntime_names_them() -> None:
    """The names seen in real onnxruntime 1.2x profiles of EfficientNet-B0: rewritten QDQ nodes get _token_N,
    NCHWc convolutions their output's name + _nchwc, fusions a /...Fusion/ suffix; layout kernels stay unattributed
    but count in the graph's total; warm-up runs are dropped."""
    nodes = [("/b/Conv", "Conv", ("x", "w"), ("/b/Conv_output_0",)),
             ("/b/Conv_1", "Conv", ("x", "w1"), ("/b/Conv_1_output_0",)),
             ("/b/Add", "Add", ("/b/Conv_1_output_0", "x"), ("/b/Add_output_0",)),
             ("/b/Relu", "Relu", ("/b/Add_output_0",), ("/b/Relu_output_0",)),
             ("/b/Mul", "Mul", ("/b/Relu_output_0", "s"), ("/b/Mul_output_0",))]
    kernels = {"/b/Conv_token_5": 1.0, "/b/Relu_output_0_nchwc": 2.0, "/b/Mul/QuickGeluFusion/": 3.0,
               "ReorderOutput_token_297": 0.5, "input_QuantizeLinear": 0.25}
    events = [{"cat": "Session", "name": "model_run", "dur": 9}]
    for run in range(4):
        scale = 10.0 if run == 0 else float(run)  # the warm-up run is slow
        events += [{"cat": "Node", "name": f"{k}_kernel_time", "dur": v * 1000 * scale} for k, v in kernels.items()]
        events += [{"cat": "Node", "name": f"{k}_fence_before", "dur": 1} for k in kernels]
    times = attribute_kernels(events, nodes, warmup=1, rounds=3)
    assert times["/b/Conv"] == [1.0, 2.0, 3.0]
    assert times["/b/Conv_1"] == [2.0, 4.0, 6.0]  # Conv+Add+Relu fused, named after the Relu: the conv's kernel
    assert times["/b/Mul"] == [3.0, 6.0, 9.0]
    assert np.allclose(times[GRAPH], [6.75, 13.5, 20.25])
    assert set(times) == {GRAPH, "/b/Conv", "/b/Conv_1", "/b/Mul"}


def _profiled_pair(tmp_path, profiler) -> tuple[dict, list]:
    """A real QDQ u8s8 graph and its float graph profiled by ``profiler`` (3 rounds): ({label: times}, layers)."""
    import torch
    from helpers.graphs import quantizable_nodes
    from torch import nn

    from edgepipe.quant.calibration import ArrayDataReader
    from edgepipe.quant.tracks import calibrate, cpu_track, graph_nodes, preprocess, quantize_track

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.Sigmoid(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 24, 24),), str(tmp_path / "f.onnx"), input_names=["input"],
                      dynamic_axes={"input": {0: "batch"}}, opset_version=17, dynamo=False)
    prepared = preprocess(tmp_path / "f.onnx", tmp_path / "prepared.onnx")
    images = np.random.default_rng(0).random((16, 3, 24, 24), np.float32)
    calibrate(prepared, ArrayDataReader(images, "input", batch_size=8), "minmax", 99.999, tmp_path / "ranges.json")
    int8 = quantize_track(prepared, tmp_path / "int8.onnx", cpu_track(), "minmax", tmp_path / "ranges.json")
    profiles = profiler(images, 1, graph_nodes(prepared), rounds=3, warmup=1)({"int8": int8, "float": prepared})
    return profiles, quantizable_nodes(prepared)


def _assert_every_weight_layer_timed(profiles: dict, layers: list) -> None:
    for label in ("int8", "float"):
        times = profiles[label]
        for name, _ in layers:
            assert len(times[name]) == 3 and all(t > 0 for t in times[name]), (label, name)
        weighted = sum(np.asarray(times[name]) for name, _ in layers)
        assert np.all(weighted < np.asarray(times["(graph)"]))  # the graph also runs Q/DQ and layout kernels


def test_a_real_profile_attributes_every_weight_layer_in_both_graphs(tmp_path) -> None:
    """onnxruntime's profiler on a real QDQ u8s8 graph and its float graph: every Conv/Gemm has a kernel time per
    round in each, within the graph's total (which also counts layout and Q/DQ kernels)."""
    from edgepipe.quant.speed import ort_profiler

    _assert_every_weight_layer_timed(*_profiled_pair(tmp_path, ort_profiler))


def test_openvino_layers_are_traced_to_their_nodes_as_openvino_names_them() -> None:
    """OpenVINO names a layer after its ONNX node plus "/..." for what it made of it; TorchScript node names
    contain "/" themselves; a layer may carry its node's output name instead; reorders and FakeQuantize of Q/DQ
    pairs belong to no node of the float graph."""
    from edgepipe.quant.speed import GRAPH, attribute_layers

    nodes = [("node_Conv_138", "Conv", ("x", "w"), ("c",)), ("/layer1/conv/Conv", "Conv", ("c", "w2"), ("d",)),
             ("/layer1/conv/Conv_1", "Conv", ("d", "w3"), ("e",)), ("node_linear", "Gemm", ("e", "w4"), ("y",))]
    rounds = [[("node_Conv_138/WithoutBiases", 0.5), ("input_QuantizeLinear", 0.1),
               ("input_QuantizeLinear_abcd_acdb_node_Conv_138/WithoutBiases", 0.05),
               ("/layer1/conv/Conv/WithoutBiases", 0.3), ("/layer1/conv/Conv_1/WithoutBiases", 0.2),
               ("node_linear/WithoutBiases/DequantizationMultiply", 0.02), ("node_linear", 0.01),
               ("e", 0.04), ("y/sink_port_0", 0.0)]] * 2
    times = attribute_layers(rounds, nodes)
    assert times["node_Conv_138"] == [0.5, 0.5] and times["/layer1/conv/Conv"] == [0.3, 0.3]
    assert np.allclose(times["/layer1/conv/Conv_1"], [0.24, 0.24])  # "e": named after its output
    assert np.allclose(times["node_linear"], [0.03, 0.03])
    assert np.allclose(times[GRAPH], [1.22, 1.22])


def test_a_real_openvino_profile_attributes_every_weight_layer_in_both_graphs(tmp_path) -> None:
    """OpenVINO's per-layer counters on the same pair: every Conv/Gemm has a time per round in each (a Gemm
    turned FullyConnected is named after its output)."""
    pytest.importorskip("openvino")
    from edgepipe.quant.speed import ov_profiler

    _assert_every_weight_layer_timed(*_profiled_pair(tmp_path, ov_profiler))


def test_a_zero_time_is_never_a_gain() -> None:
    """OpenVINO's counters have microsecond resolution: a layer can read 0 ms; nothing divides by it."""
    from edgepipe.quant.speed import clearly_faster

    assert not clearly_faster([0.0, 0.0], [0.0, 0.0]) and not clearly_faster([0.0], [0.0])
    assert clearly_faster([0.0, 0.1], [1.0, 1.0])
