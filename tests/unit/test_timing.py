"""timing.time_calls: iterations and duration are both minimums (trtexec's --iterations and --duration)."""

from __future__ import annotations

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
