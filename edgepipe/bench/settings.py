"""A CPU runtime's settings, chosen per (artifact, runtime, batch size) by measurement, not assumed.

How a runtime is configured moves latency as much as the artifact does, and the best setting depends on the
batch size. Measured on a 2-core Xeon (mnist-resnet's pruned int8-cpu graph, OpenVINO 2026.4, onnxruntime
1.32): at batch 1 one thread beat two on both runtimes (0.084 vs 0.088 ms onnxruntime, 0.091 vs 0.116 ms
OpenVINO: waking the second thread costs more than it gives), while at batch 64 OpenVINO's throughput
configuration (two streams of one thread, the batch split across them) ran 1.03 ms against 1.18 ms for its
latency configuration. bench therefore probes each candidate below in short interleaved rounds before its
timed windows, and keeps a candidate other than the default only when it is faster than the default in every
round by more than the rounds' own spread and by at least ``MIN_GAIN``: a setting is not changed on one lucky
window, nor for a difference too small to matter. The thread count is a budget: no candidate uses more than
bench was given.

PyTorch has no candidates: its thread pool is process-wide (``torch.set_num_threads``), so it runs with the
whole budget, which is also its fastest on the machines measured (0.99 vs 1.12 ms for 2 vs 1 thread at batch 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepipe.timing import time_calls

MIN_GAIN = 0.03  # a setting other than the default must win every probe round by this much at least


@dataclass(frozen=True)
class Setting:
    threads: int | None
    hint: str | None = None  # OpenVINO's PERFORMANCE_HINT ("LATENCY" or "THROUGHPUT"); None elsewhere

    @property
    def label(self) -> str:
        threads = "all threads" if self.threads is None else f"{self.threads} thread{'s' * (self.threads != 1)}"
        return threads + (", throughput streams" if self.hint == "THROUGHPUT" else "")

    @property
    def short(self) -> str:
        """For table cells: "1t", "2t+tp" (throughput streams)."""
        return f"{self.threads or 'all'}t" + ("+tp" if self.hint == "THROUGHPUT" else "")

    def to_json(self) -> dict[str, Any]:
        return {"threads": self.threads, **({"hint": self.hint} if self.hint else {})}

    @classmethod
    def from_json(cls, value: Any) -> Setting | None:
        """A setting recorded in report.json (bench's pick), or None when the record holds none usable."""
        if not isinstance(value, dict):
            return None
        threads, hint = value.get("threads"), value.get("hint")
        if not (threads is None or (type(threads) is int and threads >= 1)) or hint not in (None, "LATENCY",
                                                                                             "THROUGHPUT"):
            return None  # (type() is int: JSON true is not one thread; callers cap the count at the CPUs)
        return cls(threads, hint)


def candidates(runtime: str | None, threads: int | None, batch: int) -> list[Setting]:
    """What bench tries for ``runtime`` at ``batch``, the default (the whole thread budget) first."""
    if runtime == "openvino":
        found = [Setting(threads, "LATENCY")]
        if threads and threads > 1:
            found.append(Setting(1, "LATENCY"))
            if batch > 1:
                found.append(Setting(threads, "THROUGHPUT"))
        return found
    if runtime == "onnxruntime" and threads and threads > 1:
        return [Setting(threads), Setting(1)]
    return [Setting(threads)]


def probe(calls: dict[Setting, Callable[[], object]], *, rounds: int = 3, seconds: float = 0.1, iters: int = 20
          ) -> tuple[Setting, dict[str, Any]]:
    """Time every candidate (``calls``: the default first) in ``rounds`` interleaved windows; return the one to
    use and what was measured ({label: [p50 per round]}, and why the choice)."""
    settings = list(calls)
    default = settings[0]
    per_round: dict[Setting, list[float]] = {setting: [] for setting in settings}
    for round_index in range(rounds):
        order = settings[round_index % len(settings):] + settings[:round_index % len(settings)]
        for setting in order:
            samples = time_calls(calls[setting], warmup=3, iters=iters, seconds=seconds, warmup_seconds=0.0)
            per_round[setting].append(float(np.percentile(samples, 50)))
    chosen, why = default, "the default: no other setting beat it in every round"
    if len(settings) > 1:
        spread = max(MIN_GAIN, (max(per_round[default]) - min(per_round[default])) / max(min(per_round[default]),
                                                                                           1e-9))
        for setting in settings[1:]:
            gains = [1 - mine / theirs for mine, theirs in zip(per_round[setting], per_round[default], strict=True)]
            if min(gains) > spread and (chosen is default or np.median(per_round[setting])
                                        < np.median(per_round[chosen])):
                chosen = setting
                why = (f"faster than {default.label} in every round by {min(gains):.0%} or more "
                       f"(needed: the default's own spread or {MIN_GAIN:.0%}, whichever is larger: {spread:.0%})")
    return chosen, {"chosen": chosen.label, "why": why, "rounds": rounds,
                    "p50_ms": {setting.label: [round(v, 4) for v in per_round[setting]] for setting in settings}}
