"""The task's score of an ONNX file on onnxruntime: what the quantize budget, its fallback and QAT are judged by."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def score_of(onnx_path: Path, split, task) -> float:
    """The task's primary metric (top-1, PSNR...) of the model file on ``split``."""
    from edgepipe.runners.base import infer_in_batches
    from edgepipe.runners.onnxruntime import OrtRunner

    with OrtRunner(onnx_path) as runner:
        outputs = infer_in_batches(runner, split, 256)
    return task.score(np.asarray(outputs), task.targets(split))


@dataclass(frozen=True)
class Judge:
    """What every quantize decision is judged by: the prepared FP32 graph each mix is quantized from (with its
    calibration method and ranges), the val split, the source model's val score, and the budget left for quantize
    against that source (edgepipe.tasks.budget: ``Budget.left``)."""

    prepared: Path
    method: str
    ranges: Path
    val: Any
    reference_val: float
    allowed: float
    task: Any

    def drop_of(self, onnx_path: Path) -> float:
        """How much ``onnx_path`` loses against the source model on val, in the task's unit."""
        return self.task.drop(self.reference_val, score_of(onnx_path, self.val, self.task))
