"""Latency-aware float fallback for the CPU INT8 track: keep a layer in float where INT8 is measured slower.

onnxruntime's int8 convolutions (QLinearConv, NHWC, u8s8 GEMM) only pay off when the channel counts fill
the GEMM tiles. A stem convolution on a 1-channel image is the extreme case: on an AVX-512 VNNI EPYC, at
batch 64, ResNet's 1->16 3x3 stem takes 0.52 ms in int8 and 0.06 ms in float (onnxruntime profiler). So,
like TensorRT's builder, which times each layer and runs it in FP32 when that tactic wins, the CPU track
times the whole graph with each quantizable layer in float vs int8 (same process, interleaved rounds) and
keeps the float version when it is at least ``min_gain`` faster. Greedy in graph order: each decision is
measured on top of the previous ones. Keeping a layer in float rarely costs accuracy, and the caller
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
# {label: model path} -> {label: p50 ms}, measured side by side
TimeModels = Callable[[dict[str, Path]], dict[str, float]]


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
        times = time_models({"int8": current, "float": candidate})
        gain = 1.0 - times["float"] / times["int8"]
        keep = gain >= min_gain
        table.append({"node": name, "op": op, "int8_ms": round(times["int8"], 4),
                      "float_ms": round(times["float"], 4), "gain": round(gain, 4), "kept_float": keep})
        if keep:
            excluded.append(name)
            kept.append(name)
            current = candidate
    return SpeedFallback(current, kept, table)


def ort_timer(batch: np.ndarray, threads: int, rounds: int = 3, seconds: float = 0.25) -> TimeModels:
    """p50 per model from ``rounds`` interleaved windows of ``seconds`` each (median of the windows' p50s)."""
    import contextlib

    from edgepipe.runners.onnxruntime import OrtRunner
    from edgepipe.timing import interleaved_p50s

    def time_models(models: dict[str, Path]) -> dict[str, float]:
        with contextlib.ExitStack() as stack:
            runners = {label: stack.enter_context(OrtRunner(path, threads=threads)) for label, path in models.items()}
            return interleaved_p50s(runners, batch, rounds=rounds, seconds=seconds)

    return time_models
