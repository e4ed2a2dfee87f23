"""PyTorch → ONNX with a dynamic batch axis and named outputs; the parity numbers every stage reports.

Used by the export stage, by prune (both models exported to time them side by side) and by QAT.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.errors import EdgepipeError, first_line
from edgepipe.recipe import ExportConfig

INPUT_NAME = "input"
OUTPUT_NAME = "logits"  # a model with one output; several outputs are named by the model (dict keys) or output<i>


def output_names(outputs: Any) -> list[str]:
    """ONNX output names for what ``model(example)`` returned: one tensor, a tuple/list, or a dict of tensors."""
    if isinstance(outputs, dict):
        return [str(key) for key in outputs]
    if isinstance(outputs, (tuple, list)):
        return [OUTPUT_NAME] if len(outputs) == 1 else [f"output{i}" for i in range(len(outputs))]
    return [OUTPUT_NAME]


def export_onnx(model, example, path: Path, config: ExportConfig) -> list[str]:
    """Write ``model`` traced on ``example`` to ``path``; returns the output names (one per model output)."""
    import torch

    with torch.inference_mode():
        names = output_names(model(example))
    axes = {name: {0: "batch"} for name in [INPUT_NAME, *names]} if config.dynamic_batch else None
    kwargs: dict[str, Any] = {"input_names": [INPUT_NAME], "output_names": names, "dynamic_axes": axes,
                              "opset_version": config.opset, "dynamo": config.exporter == "dynamo"}
    if config.exporter == "dynamo":
        kwargs["external_data"] = False  # one self-contained file: easier to copy to a device
    # The exporters print pages of progress and warnings; keep them for errors only.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(path), **kwargs)
        except Exception as exc:
            raise EdgepipeError(f"ONNX export ({config.exporter}) failed: {first_line(exc)[:300]}; "
                                "try export.exporter: torchscript") from None
    return names


def parity(reference: np.ndarray, candidate: np.ndarray, task) -> dict[str, float]:
    """How two output batches differ: max abs difference, the same relative to the reference's largest
    magnitude (a deep net's logits of 30 differ more in absolute terms than LeNet's of 3, at the same
    precision), cosine similarity of the flattened outputs, and the task's agreement (top-1 agreement for a
    classifier, the PSNR between the two for an autoencoder)."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    max_abs = float(np.abs(reference - candidate).max())
    scale = float(np.abs(reference).max())
    norms = float(np.linalg.norm(reference) * np.linalg.norm(candidate))
    return {
        "max_abs_diff": max_abs,
        "max_rel_diff": max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")),
        "cosine": float(np.dot(reference.ravel(), candidate.ravel()) / norms) if norms > 0 else float(max_abs == 0),
        "agreement": task.agreement(reference, candidate),
        "samples": int(len(reference)),
    }
