"""The task's score of an ONNX file on onnxruntime: what the quantize budget, its fallback and QAT are judged by."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def score_of(onnx_path: Path, split, task) -> float:
    """The task's primary metric (top-1, PSNR...) of the model file on ``split``."""
    from edgepipe.runners.base import infer_in_batches
    from edgepipe.runners.onnxruntime import OrtRunner

    with OrtRunner(onnx_path) as runner:
        outputs = infer_in_batches(runner, split, 256)
    return task.score(np.asarray(outputs), task.targets(split))
