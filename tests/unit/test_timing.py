"""timing.time_calls: iterations and duration are both minimums (trtexec's --iterations and --duration)."""

from __future__ import annotations

import itertools
import time

from edgepipe.timing import summarize, time_calls


def test_iters_alone_times_exactly_that_many_calls() -> None:
    calls = []
    samples = time_calls(lambda: calls.append(1), warmup=4, iters=3)
    assert len(samples) == 3 and len(calls) == 7


def test_a_time_floor_keeps_timing_past_the_iteration_count() -> None:
    started = time.perf_counter()
    samples = time_calls(lambda: time.sleep(0.001), warmup=0, iters=2, seconds=0.05)
    assert time.perf_counter() - started >= 0.05
    assert len(samples) >= 5 and samples.min() >= 1.0  # milliseconds


def test_warmup_seconds_also_is_a_floor() -> None:
    calls = []
    started = time.perf_counter()
    time_calls(lambda: calls.append(time.sleep(0.001)), warmup=1, iters=1, warmup_seconds=0.03)
    assert time.perf_counter() - started >= 0.03 and len(calls) > 2


def test_summary_percentiles_are_ordered() -> None:
    latency = summarize([1.0, 2.0, 3.0, 4.0, 100.0], batch_size=8)
    assert latency.p50_ms == 3.0 and latency.p50_ms <= latency.p90_ms <= latency.p99_ms
    assert latency.throughput_per_s == 8 / 0.003


def test_interleaved_rounds_rotate_who_goes_first_and_take_the_median() -> None:
    import numpy as np

    from edgepipe.timing import interleaved_p50s

    calls: list[str] = []

    class Scripted:  # runner-shaped: infer() sleeps a fixed time and records the order
        def __init__(self, name: str, seconds: float) -> None:
            self.name, self.seconds = name, seconds

        def infer(self, batch):
            calls.append(self.name)
            time.sleep(self.seconds)

    p50s = interleaved_p50s({"a": Scripted("a", 0.002), "b": Scripted("b", 0.001)}, np.zeros((1, 1)), rounds=2,
                            seconds=0.0, warmup=0)
    windows = [name for name, _ in itertools.groupby(calls)]
    assert windows == ["a", "b", "a"] and len(calls) == 20  # a b | b a: round 2 starts with b; 5 calls a window
    assert p50s["a"] > p50s["b"] >= 1.0
