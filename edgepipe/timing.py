"""Latency measurement through the runner contract: warmup, then timed iterations, percentiles.

Used by `bench` and by stages that must prove a speed claim (prune, quantize). Ratios are only
meaningful when both sides are measured in the same process, one after the other (the machine is shared).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgepipe.runners.base import Runner


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, e.g. a container's cpuset), else the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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


def time_calls(call: Callable[[], object], *, warmup: int = 10, iters: int = 50, seconds: float | None = None,
               warmup_seconds: float = 0.0) -> np.ndarray:
    """Milliseconds per call of ``call()``, trtexec-style: warm up for ``warmup`` calls *and* ``warmup_seconds``,
    then time at least ``iters`` calls *and*, with ``seconds``, at least that long (and at least 5 calls).

    A time floor is what makes short calls comparable: 200 calls of 0.05 ms are a 10 ms window, which one
    scheduler hiccup or another runtime's still-spinning threads can move by 20 %; a 1 s window cannot.
    """
    deadline = time.perf_counter() + warmup_seconds
    done = 0
    while done < warmup or time.perf_counter() < deadline:
        call()
        done += 1
    samples: list[float] = []
    deadline = time.perf_counter() + (seconds or 0.0)
    minimum = max(iters, 5) if seconds else iters
    while len(samples) < minimum or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000.0)
    return np.asarray(samples)


def summarize(samples_ms: np.ndarray, batch_size: int) -> Latency:
    """Percentiles of per-call times (several rounds of ``time_calls`` may be pooled first)."""
    times = np.asarray(samples_ms, dtype=np.float64)
    return Latency(batch_size, len(times), float(np.percentile(times, 50)), float(np.percentile(times, 90)),
                   float(np.percentile(times, 99)), float(times.mean()))


def interleaved_rounds(runners: dict[str, Runner], batch: np.ndarray, *, rounds: int, seconds: float,
                       warmup: int = 3) -> dict[str, list[float]]:
    """Each runner's p50 on ``batch`` per round: every round times every runner once (at least ``seconds``),
    and who goes first rotates, so drift on a shared machine hits them all alike. Round ``i`` of two runners
    is a paired sample: compare them round by round to see whether a difference stands out of the noise."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners.items())
    for round_index in range(rounds):
        shift = round_index % len(order)
        for name, runner in order[shift:] + order[:shift]:
            samples[name].append(measure_latency(runner, batch, warmup=warmup, iters=5, seconds=seconds).p50_ms)
    return samples


def interleaved_p50s(runners: dict[str, Runner], batch: np.ndarray, *, rounds: int, seconds: float,
                     warmup: int = 3) -> dict[str, float]:
    """Median over ``rounds`` of each runner's p50 on ``batch`` (see ``interleaved_rounds``)."""
    samples = interleaved_rounds(runners, batch, rounds=rounds, seconds=seconds, warmup=warmup)
    return {name: float(np.median(times)) for name, times in samples.items()}


def measure_latency(runner: Runner, batch: np.ndarray, *, warmup: int = 10, iters: int = 50,
                    seconds: float | None = None) -> Latency:
    """Time ``runner.infer(batch)``: at least ``iters`` calls and, with ``seconds``, at least that long."""
    samples = time_calls(lambda: runner.infer(batch), warmup=warmup, iters=iters, seconds=seconds)
    return summarize(samples, len(batch))
