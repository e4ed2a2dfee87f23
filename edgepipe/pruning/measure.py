"""What a pruning run changed: measured onnxruntime latency (MACs and parameters: :mod:`edgepipe.complexity`).

Latency of the unpruned and the pruned model is measured side by side in one process, interleaved
(A, B, A, B, ...) and summarised by the median over rounds: on a shared, noisy CPU the two models then
see the same background load, so their ratio means something even when the absolute numbers drift.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

LATENCY_BATCHES = (1, 64)


def export_for_timing(model: nn.Module, input_shape: list[int] | tuple[int, ...], path: Path) -> Path:
    """A quick ONNX export (TorchScript exporter, dynamic batch; dynamo where the model has custom ops that only it
    writes, e.g. NMS): only used to time the graph."""
    from edgepipe.onnx_export import custom_translations, export_onnx
    from edgepipe.recipe import ExportConfig

    model = model.eval().cpu()
    example = torch.zeros(2, *input_shape)
    exporter = "dynamo" if custom_translations(model) else "torchscript"
    export_onnx(model, example, path, ExportConfig(exporter=exporter, dynamic_batch=True))
    return path


def side_by_side_latency(onnx_paths: dict[str, Path], input_shape: list[int] | tuple[int, ...], *,
                         batches: tuple[int, ...] = LATENCY_BATCHES, rounds: int = 5, seconds: float = 0.25,
                         threads: int | None = None) -> dict[str, Any]:
    """p50 latency (ms) per ONNX model and batch: median over ``rounds`` interleaved measurements.

    Returns {"threads", "rounds", "batches": {str(batch): {model: {"p50_ms", "throughput_per_s"}}}}.
    """
    from edgepipe.runners.onnxruntime import OrtRunner
    from edgepipe.timing import available_cpus, interleaved_p50s

    threads = threads or available_cpus()  # as quantize and bench time: every CPU this process may use
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"backend": "onnxruntime-cpu", "threads": threads, "rounds": rounds, "batches": {}}
    with contextlib.ExitStack() as stack:
        runners = {name: stack.enter_context(OrtRunner(path, threads=threads)) for name, path in onnx_paths.items()}
        for batch_size in batches:
            batch = rng.standard_normal((batch_size, *input_shape)).astype(np.float32)
            p50s = interleaved_p50s(runners, batch, rounds=rounds, seconds=seconds)
            results["batches"][str(batch_size)] = {
                name: {"p50_ms": p50, "throughput_per_s": batch_size / (p50 / 1000.0)} for name, p50 in p50s.items()
            }
    return results


def speedups(latency: dict[str, Any], reference: str = "unpruned", candidate: str = "pruned") -> dict[str, float]:
    """Throughput ratio candidate / reference per batch size ("1": 1.3 means 1.3x faster)."""
    return {batch: per_model[reference]["p50_ms"] / per_model[candidate]["p50_ms"]
            for batch, per_model in latency["batches"].items()}
