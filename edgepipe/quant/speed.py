"""Latency-aware float fallback for the CPU INT8 track: keep a layer in float where INT8 is measured slower.

onnxruntime's int8 convolutions (QLinearConv, NHWC, u8s8 GEMM) only pay off when the channel counts fill
the GEMM tiles. A stem convolution on a 1-channel image is the extreme case: on an AVX-512 VNNI EPYC, at
batch 64, ResNet's 1->16 3x3 stem takes 0.52 ms in int8 and 0.06 ms in float (onnxruntime profiler). So,
like TensorRT's builder, which times each layer and runs it in FP32 when that tactic wins, the CPU track
times the whole graph with each quantizable layer in float vs int8 (same process, interleaved rounds) and
keeps the float version when it is at least ``min_gain`` faster in every round (the rounds are paired: both
graphs are timed back to back, so a slow phase of the machine hits both). One good round is not evidence:
a decision that does not stand out of the rounds' spread leaves the layer in int8, the default, so a loaded
machine changes the timings but not the artifact. Greedy in graph order: each decision is measured on top
of the previous ones. Keeping a layer in float rarely costs accuracy, and the caller
re-checks the budget. The TensorRT track is left alone: TensorRT picks its own per-layer tactics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MIN_GAIN = 0.08  # below this, a whole-graph difference is within this shared machine's run-to-run noise

# excluded layer names -> path of the CPU-track model with those layers in float
BuildTrack = Callable[[list[str]], Path]
# {label: model path} -> {label: [p50 ms per round]}, measured side by side in interleaved rounds
TimeModels = Callable[[dict[str, Path]], dict[str, list[float]]]


def clearly_faster(fast: list[float], slow: list[float], min_gain: float = MIN_GAIN) -> bool:
    """``fast`` beats ``slow`` by ``min_gain`` in every paired round, not just on the median."""
    return bool(fast) and all(1.0 - f / s >= min_gain for f, s in zip(fast, slow, strict=True))


@dataclass
class SpeedFallback:
    model: Path
    kept_float: list[str]
    table: list[dict] = field(default_factory=list)


def keep_float_where_faster(layers: list[tuple[str, str]], already_float: list[str], build: BuildTrack,
                            time_models: TimeModels, min_gain: float = MIN_GAIN) -> SpeedFallback:
    """Try each quantizable layer (graph order) in float; keep it there when the graph gets ``min_gain`` faster."""
    excluded = list(already_float)
    current = build(excluded)
    kept: list[str] = []
    table = []
    for name, op in layers:
        if name in excluded:
            continue
        candidate = build([*excluded, name])
        rounds = time_models({"int8": current, "float": candidate})
        int8_ms, float_ms = float(np.median(rounds["int8"])), float(np.median(rounds["float"]))
        keep = clearly_faster(rounds["float"], rounds["int8"], min_gain)
        gains = [1.0 - f / i for f, i in zip(rounds["float"], rounds["int8"], strict=True)]
        table.append({"node": name, "op": op, "int8_ms": round(int8_ms, 4), "float_ms": round(float_ms, 4),
                      "gain": round(1.0 - float_ms / int8_ms, 4), "worst_round_gain": round(min(gains), 4),
                      "kept_float": keep})
        if keep:
            excluded.append(name)
            kept.append(name)
            current = candidate
    return SpeedFallback(current, kept, table)


def ort_timer(batch: np.ndarray, threads: int, rounds: int = 3, seconds: float = 0.25) -> TimeModels:
    """p50 per model and round, from ``rounds`` interleaved windows of ``seconds`` each."""
    import contextlib

    from edgepipe.runners.onnxruntime import OrtRunner
    from edgepipe.timing import interleaved_rounds

    def time_models(models: dict[str, Path]) -> dict[str, list[float]]:
        with contextlib.ExitStack() as stack:
            runners = {label: stack.enter_context(OrtRunner(path, threads=threads)) for label, path in models.items()}
            return interleaved_rounds(runners, batch, rounds=rounds, seconds=seconds)

    return time_models
