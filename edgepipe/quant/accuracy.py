"""Top-1 accuracy of an ONNX file on onnxruntime: what the quantize budget, its fallback and QAT are judged by."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def accuracy_of(onnx_path: Path, x: np.ndarray, y: np.ndarray) -> float:
    from edgepipe.runners.base import infer_in_batches
    from edgepipe.runners.onnxruntime import OrtRunner

    with OrtRunner(onnx_path) as runner:
        return float((infer_in_batches(runner, x, 256).argmax(1) == y).mean())
