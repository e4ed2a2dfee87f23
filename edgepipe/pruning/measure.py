"""What a pruning run changed: MACs and parameters (torch-pruning's counter) and measured onnxruntime latency.

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


def count_macs_params(model: nn.Module, input_shape: list[int] | tuple[int, ...]) -> tuple[int, int]:
    """(MACs for one sample, parameters). torch-pruning counts on a deep copy, in eval mode."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, torch.zeros(1, *input_shape))
    model.train(was_training)
    return int(macs), int(params)


def export_for_timing(model: nn.Module, input_shape: list[int] | tuple[int, ...], path: Path) -> Path:
    """A quick ONNX export (TorchScript exporter, dynamic batch): only used to time the graph."""
    from edgepipe.recipe import ExportConfig
    from edgepipe.stages.export import _torch_export

    model = model.eval().cpu()
    example = torch.zeros(2, *input_shape)
    _torch_export(model, example, path, ExportConfig(exporter="torchscript", dynamic_batch=True))
    return path


def side_by_side_latency(onnx_paths: dict[str, Path], input_shape: list[int] | tuple[int, ...], *,
                         batches: tuple[int, ...] = LATENCY_BATCHES, rounds: int = 5, seconds: float = 0.25,
                         threads: int = 2) -> dict[str, Any]:
    """p50 latency (ms) per ONNX model and batch: median over ``rounds`` interleaved measurements.

    Returns {"threads", "rounds", "batches": {str(batch): {model: {"p50_ms", "throughput_per_s"}}}}.
    """
    from edgepipe.runners.onnxruntime import OrtRunner
    from edgepipe.timing import interleaved_p50s

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
