"""The latency-target search: bisection on measured latency, the least pruning that meets the target, and an
honest miss when nothing can."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import edgepipe.pruning.latency_target as latency_target
from edgepipe.pruning.channel import ChannelOptions
from edgepipe.pruning.latency_target import (
    LATENCY_MARGIN,
    SEARCH_ITERATIONS,
    LatencyPlan,
    search_latency_ratio,
    verdict,
    width_candidates,
)

SHAPE = [1, 16, 16]


class FakeTimer:
    """Latency falls linearly with the strength: 1 ms unpruned, 0.2 ms at strength 0.8 (no machine noise)."""

    def __init__(self, *args, **kwargs) -> None:
        self.calls = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def __call__(self, candidate) -> dict[str, float]:
        self.calls += 1
        return {"candidate_ms": 1.0 - candidate.strength, "unpruned_ms": 1.0}


@pytest.fixture
def fake_timing(monkeypatch):
    monkeypatch.setattr(latency_target, "CandidateTimer", FakeTimer)


def _search(target: float, max_strength: float = 0.8):
    plan = LatencyPlan("onnxruntime", 1, target, 0.05)
    return search_latency_ratio(SimpleNamespace(strength=0.0), SHAPE, plan,
                                lambda strength: SimpleNamespace(strength=strength), max_strength=max_strength)


def test_bisection_finds_the_least_strength_under_the_goal(fake_timing):
    search = _search(0.5)
    least = 1.0 - 0.5 * (1 - LATENCY_MARGIN)  # 1 - s <= goal
    assert search["met"] and search["why"] is None
    assert least <= search["ratio"] <= least + 0.8 / 2 ** SEARCH_ITERATIONS
    assert search["predicted_ms"] <= search["goal_ms"]
    assert len(search["trials"]) == 2 + SEARCH_ITERATIONS and search["source"] == "measured"


def test_a_target_the_unpruned_model_meets_prunes_nothing(fake_timing):
    search = _search(2.0)
    assert search["ratio"] == 0.0 and search["met"] and "already meets" in search["why"]


def test_an_unreachable_target_is_a_reported_miss(fake_timing):
    search = _search(0.1)
    assert search["ratio"] == 0.8 and not search["met"] and search["why"] == "max ratio reached (0.80)"
    result = verdict(LatencyPlan("onnxruntime", 1, 0.1, 0.05), 0.21, search)
    assert not result["met"] and result["missed_by_ms"] == pytest.approx(0.11)
    assert result["line"] == ("latency 0.210 ms (measured) misses the 0.100 ms target on onnxruntime at batch 1 by "
                              "0.110 ms: max ratio reached (0.80)")


def test_a_miss_near_the_floor_says_so():
    search = {"met": True, "why": None, "predicted_ms": 0.05}
    result = verdict(LatencyPlan("openvino", 64, 0.05, 0.045), 0.06, search)
    assert "timing noise" in result["why"] and "the per-call floor is 0.045 ms of it" in result["why"]
    assert verdict(LatencyPlan("openvino", 64, 0.05, 0.045), 0.049, search)["met"]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.classifier(x.mean(dim=(2, 3)))


def _real_search(target: float):
    torch.manual_seed(0)
    model = Net().eval()
    candidates = width_candidates(model, SHAPE, ChannelOptions(model_name="net"))
    plan = LatencyPlan("onnxruntime", 8, target, None, rounds=3, seconds=0.02)
    return model, search_latency_ratio(model, SHAPE, plan, candidates, max_strength=0.9)


def test_measured_search_on_a_real_runtime():
    # a loose target: the unpruned model meets it and nothing is pruned
    model, loose = _real_search(1000.0)
    assert loose["met"] and loose["ratio"] == 0.0 and len(loose["trials"]) == 1
    # an impossible one (above the floor, below any model): a miss at the largest ratio, measured
    _, impossible = _real_search(1e-4)
    assert not impossible["met"] and impossible["ratio"] == 0.9 and "max ratio reached" in impossible["why"]
    strongest = impossible["trials"][-1]
    assert strongest["candidate_ms"] < strongest["unpruned_ms"]  # 64 -> 8 channels is measurably faster
    assert model.conv1.out_channels == 64  # candidates are copies
