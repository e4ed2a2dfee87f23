"""Per-layer latency (onnxruntime and OpenVINO profilers, trtexec --exportProfile files), the per-call floor, and the
refusals a latency target meets before anything is pruned."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import edgepipe.runners.select as select
from edgepipe.errors import EdgepipeError
from edgepipe.pruning.latency_target import LatencyPlan, kept_mac_fraction, plan_latency, profile_before_after
from edgepipe.pruning.layer_latency import (
    engine_layer_nodes,
    layer_latency,
    module_path,
    per_call_floor,
    profile_models,
    read_trtexec_profile,
    trtexec_profile,
)
from edgepipe.pruning.measure import export_for_timing
from edgepipe.recipe import PruneConfig

SAMPLE = Path(__file__).parents[1] / "data" / "trtexec" / "profile_tiny_b1.json"
SHAPE = [1, 16, 16]
QUICK = {"rounds": 5, "seconds": 0.02}


class Tiny(nn.Module):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv2(self.relu(self.conv1(self.relu(self.stem(x))))))
        return self.classifier(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return export_for_timing(Tiny(), SHAPE, tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.mark.parametrize(("node", "module"), [
    ("/stages/stages.0/conv1/Conv", "stages.0.conv1"),
    ("/stages/stages.1/shortcut/shortcut.0/Conv", "stages.1.shortcut.0"),
    ("/stages/stages.0/Add", "stages.0"),
    ("/conv1/Conv", "conv1"),
    ("Identity_0", "Identity_0"),  # not a TorchScript scope: as it is
])
def test_module_path_strips_torchscript_scopes(node, module):
    assert module_path(node) == module


def _check_profile(profile, runtime: str) -> None:
    names = {row.name: row for row in profile.layers}
    assert {"stem", "conv1", "conv2", "classifier"} <= set(names), names
    assert "Conv" in names["conv1"].op_types and profile.runtime == runtime and profile.batch == 4
    assert all(row.median_ms >= 0 for row in profile.layers)
    assert sum(row.share for row in profile.layers) == pytest.approx(1.0)
    if runtime == "onnxruntime":  # OpenVINO's counters can book a wait on any node of a loaded machine
        # the 32->32 3x3 convolutions do 32x the stem's (1->32) work: they must not measure as the cheap ones
        assert names["conv1"].median_ms + names["conv2"].median_ms > names["stem"].median_ms
    assert 0 < profile.total_ms < 1000 and profile.overhead_ms >= 0
    assert profile.profiled_call_ms >= profile.overhead_ms  # the call holds the overhead (and the kernels)
    assert profile.top(2)[0].median_ms >= profile.top(2)[1].median_ms


def test_onnxruntime_profile_maps_kernels_to_modules(tiny_onnx):
    _check_profile(layer_latency(tiny_onnx, "onnxruntime", 4, **QUICK), "onnxruntime")


def test_openvino_profile_maps_layers_to_modules(tiny_onnx):
    pytest.importorskip("openvino", reason="the openvino extra (make install brings it)")
    _check_profile(layer_latency(tiny_onnx, "openvino", 4, **QUICK), "openvino")


def test_floor_is_below_a_real_model(tiny_onnx):
    floor = per_call_floor(SHAPE, "onnxruntime", 4, rounds=3, seconds=0.02)
    model = profile_models({"tiny": tiny_onnx}, "onnxruntime", 4, **QUICK)["tiny"]
    assert 0 < floor < model.total_ms


def test_trtexec_profile_is_read_in_its_own_format():
    runs, entries = read_trtexec_profile(SAMPLE)
    assert runs == 1000 and len(entries) == 6
    assert engine_layer_nodes("/conv1/Conv + /relu_1/Relu") == ["/conv1/Conv", "/relu_1/Relu"]
    assert engine_layer_nodes("/classifier/Gemm input reformatter 0") == ["/classifier/Gemm"]
    profile = trtexec_profile(SAMPLE, 1)
    rows = {row.name: row for row in profile.layers}
    assert set(rows) == {"stem", "conv1", "conv2", "pool", "classifier"}
    assert rows["conv1"].median_ms == pytest.approx(0.030)  # medianMs where trtexec writes one
    assert rows["classifier"].median_ms == pytest.approx(0.004 + 0.0059)  # its reformatter is its own cost
    assert profile.total_ms == pytest.approx(sum(row.median_ms for row in profile.layers))
    assert profile.source == "proxy, not measured"


def test_trtexec_proxy_scales_each_layer_by_its_kept_macs(tiny_onnx, tmp_path):
    half = export_for_timing(Tiny(16), SHAPE, tmp_path / "half.onnx")
    kept = kept_mac_fraction(tiny_onnx, half)
    assert kept["/conv1/Conv"] == pytest.approx(0.25) and kept["/stem/Conv"] == pytest.approx(0.5)
    before = trtexec_profile(SAMPLE, 1)
    after = {row.name: row.median_ms for row in trtexec_profile(SAMPLE, 1, kept).layers}
    assert after["conv1"] == pytest.approx(0.030 * 0.25) and after["pool"] == pytest.approx(0.0079)
    plan = LatencyPlan("tensorrt", 1, None, None, SAMPLE)
    layers = profile_before_after({"unpruned": tiny_onnx, "pruned": half}, plan)
    assert layers["unpruned"].total_ms == pytest.approx(before.total_ms)
    assert layers["pruned"].total_ms < before.total_ms
    assert "proxy, not measured" in layers["pruned"].notes[-1]


def test_a_profile_of_another_model_is_refused(tmp_path):
    other = export_for_timing(nn.Sequential(nn.Flatten(), nn.Linear(256, 10)), SHAPE, tmp_path / "other.onnx")
    plan = LatencyPlan("tensorrt", 1, None, None, SAMPLE)
    with pytest.raises(EdgepipeError, match="none of its layers is a node of this model's ONNX export"):
        profile_before_after({"unpruned": other, "pruned": other}, plan)


@pytest.mark.parametrize("text", ["{}", '[{"name": "x"}]', '[{"count": 3}, {"name": "a"}]', "not json"])
def test_a_broken_trtexec_profile_is_one_line(tmp_path, text):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(EdgepipeError) as caught:
        read_trtexec_profile(path)
    assert "\n" not in str(caught.value) and "trtexec" in str(caught.value)


def test_a_target_under_the_floor_is_refused():
    config = PruneConfig(target_latency_ms=1e-6)
    with pytest.raises(EdgepipeError) as caught:
        plan_latency(config, SHAPE, rounds=1, seconds=0.01)
    line = str(caught.value)
    assert line.startswith("target 1e-06 ms is below onnxruntime's measured per-call floor ")
    assert line.endswith("ms at batch 1 on this machine; no pruning can reach it")


def test_a_runtime_not_installed_is_one_line(monkeypatch):
    monkeypatch.setattr(select, "cpu_runtime_problem", lambda name: f"{name} is not installed here")
    with pytest.raises(EdgepipeError, match=r"^openvino is not installed here: cannot time the model on openvino; "
                                            r"install it \(`pip install 'edgepipe\[openvino\]'`\)"):
        plan_latency(PruneConfig(target_latency_ms=1.0, latency_runtime="openvino"), SHAPE)


def test_tensorrt_without_a_profile_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(select, "tensorrt_problem", lambda: "no CUDA GPU is visible")
    with pytest.raises(EdgepipeError) as caught:
        plan_latency(PruneConfig(target_latency_ms=1.0, latency_runtime="tensorrt"), SHAPE)
    assert str(caught.value) == ("no GPU here to time TensorRT; run `trtexec --onnx=model.onnx "
                                 "--exportProfile=profile.json --separateProfileRun` on the device and pass "
                                 "--latency-profile profile.json")


def test_tensorrt_with_a_profile_plans_a_proxy():
    plan = plan_latency(PruneConfig(target_latency_ms=0.05, latency_runtime="tensorrt",
                                    latency_profile=str(SAMPLE)), SHAPE)
    assert plan.proxy and plan.floor_ms is None and plan.as_dict()["source"] == "proxy, not measured"
