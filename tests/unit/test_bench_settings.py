"""bench's runtime settings (bench/settings.py): candidates within the thread budget, and a setting other than
the default kept only when it wins every probe round by more than the default's own spread."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.bench import settings as settings_module
from edgepipe.bench.settings import Setting, candidates, probe


def test_candidates_stay_within_the_thread_budget_default_first():
    assert candidates("onnxruntime", 2, 1) == [Setting(2), Setting(1)]
    assert candidates("openvino", 4, 64) == [Setting(4, "LATENCY"), Setting(1, "LATENCY"), Setting(4, "THROUGHPUT")]
    assert candidates("openvino", 4, 1) == [Setting(4, "LATENCY"), Setting(1, "LATENCY")]  # one sample: one stream
    assert candidates("openvino", 1, 64) == [Setting(1, "LATENCY")]
    assert candidates(None, 2, 64) == [Setting(2)]  # torch: one process-wide pool
    assert all(s.threads <= 4 for s in candidates("openvino", 4, 64))


def test_labels_and_json_round_trip():
    assert Setting(1).label == "1 thread" and Setting(2, "THROUGHPUT").label == "2 threads, throughput streams"
    assert Setting(2, "THROUGHPUT").short == "2t+tp"
    for setting in (Setting(1), Setting(2, "THROUGHPUT"), Setting(None, "LATENCY")):
        assert Setting.from_json(setting.to_json()) == setting
    for bad in ("os:system", {"threads": 0}, {"threads": "2"}, {"threads": True}, {"threads": 2, "hint": "FAST"},
                None):
        assert Setting.from_json(bad) is None  # report.json is data: nothing odd reaches a runner


def _scripted(monkeypatch, times: dict[Setting, list[float]]):
    """time_calls returns the next scripted p50 for whichever setting's call is timed."""
    queues = {setting: iter(values) for setting, values in times.items()}

    def fake_time_calls(call, **_):
        return np.full(5, next(queues[call()]))

    monkeypatch.setattr(settings_module, "time_calls", fake_time_calls)
    return {setting: (lambda s=setting: s) for setting in times}


def test_a_setting_that_wins_every_round_beyond_the_spread_is_kept(monkeypatch):
    default, one = Setting(2), Setting(1)
    chosen, record = probe(_scripted(monkeypatch, {default: [0.100, 0.102, 0.101], one: [0.080, 0.082, 0.081]}))
    assert chosen == one
    assert record["chosen"] == "1 thread" and record["p50_ms"]["2 threads"] == [0.1, 0.102, 0.101]
    assert "every round" in record["why"]


@pytest.mark.parametrize("other", [
    [0.080, 0.082, 0.101],   # lost one round: not "every round"
    [0.099, 0.099, 0.099],   # wins every round, but by 1-3 %, inside the default's 2 % spread
])
def test_the_default_stays_unless_the_win_stands_out(monkeypatch, other):
    default, one = Setting(2), Setting(1)
    chosen, record = probe(_scripted(monkeypatch, {default: [0.100, 0.102, 0.101], one: other}))
    assert chosen == default and record["why"].startswith("the default")


def test_a_steady_but_tiny_win_is_not_a_reason_to_change(monkeypatch):
    default, one = Setting(2), Setting(1)
    chosen, _ = probe(_scripted(monkeypatch, {default: [0.100, 0.100, 0.100], one: [0.098, 0.098, 0.098]}))
    assert chosen == default  # 2 % in every round, on a default with no spread at all: below MIN_GAIN


def test_of_two_winners_the_faster_is_kept(monkeypatch):
    default, one, streams = Setting(2, "LATENCY"), Setting(1, "LATENCY"), Setting(2, "THROUGHPUT")
    chosen, _ = probe(_scripted(monkeypatch, {default: [1.0, 1.0, 1.0], one: [0.9, 0.9, 0.9],
                                              streams: [0.8, 0.8, 0.8]}))
    assert chosen == streams


def test_rounds_are_interleaved_and_rotated(monkeypatch):
    order = []
    monkeypatch.setattr(settings_module, "time_calls", lambda call, **_: (order.append(call()), np.ones(5))[1])
    a, b, c = Setting(2), Setting(1), Setting(2, "THROUGHPUT")
    probe({s: (lambda s=s: s) for s in (a, b, c)}, rounds=3)
    assert order == [a, b, c, b, c, a, c, a, b]
