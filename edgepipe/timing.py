"""Latency measurement through the runner contract: warmup, then timed iterations, percentiles.

Used by `bench` and by stages that must prove a speed claim (prune, quantize). Ratios are only
meaningful when both sides are measured in the same process, one after the other (the machine is shared).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from edgepipe.runners.base import Runner


@dataclass
class Latency:
    batch_size: int
    iters: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def throughput_per_s(self) -> float:
        return self.batch_size / (self.p50_ms / 1000.0)

    def as_dict(self) -> dict:
        return {**asdict(self), "throughput_per_s": self.throughput_per_s}


def time_calls(call: Callable[[], object], *, warmup: int = 10, iters: int = 50,
               seconds: float | None = None) -> np.ndarray:
    """Milliseconds per call of ``call()`` after ``warmup`` untimed calls; with ``seconds``, time until that much
    time has passed (at least 5 calls) instead of a fixed count."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds if seconds else None
    while (len(samples) < iters) if deadline is None else (time.perf_counter() < deadline or len(samples) < 5):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000.0)
    return np.asarray(samples)


def summarize(samples_ms: np.ndarray, batch_size: int) -> Latency:
    """Percentiles of per-call times (several rounds of ``time_calls`` may be pooled first)."""
    times = np.asarray(samples_ms, dtype=np.float64)
    return Latency(batch_size, len(times), float(np.percentile(times, 50)), float(np.percentile(times, 90)),
                   float(np.percentile(times, 99)), float(times.mean()))


def measure_latency(runner: Runner, batch: np.ndarray, *, warmup: int = 10, iters: int = 50,
                    seconds: float | None = None) -> Latency:
    """Time ``runner.infer(batch)``; with ``seconds``, run until that much time has passed (at least 5 iters)."""
    samples = time_calls(lambda: runner.infer(batch), warmup=warmup, iters=iters, seconds=seconds)
    return summarize(samples, len(batch))
