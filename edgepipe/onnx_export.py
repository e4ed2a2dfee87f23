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


def outputs_as_arrays(result: Any) -> dict[str, np.ndarray]:
    """What ``model(x)`` returned (a tensor, a tuple, a dict), as float32 arrays named as the ONNX export names them."""
    values = list(result.values()) if isinstance(result, dict) else (
        list(result) if isinstance(result, (tuple, list)) else [result])
    return {name: value.detach().float().cpu().numpy() for name, value in zip(output_names(result), values,
                                                                               strict=True)}


def scored_outputs(result: Any) -> np.ndarray:
    """The one array a task scores from ``model(x)`` (a detector's outputs packed; see device.scoring)."""
    from edgepipe.device.scoring import model_outputs

    return model_outputs(outputs_as_arrays(result))


def custom_translations(model) -> dict:
    """Custom ops the model's modules know how to write as ONNX (a detector's NonMaxSuppression: models/nms.py);
    only the dynamo exporter takes them."""
    return {op: fn for module in model.modules() for op, fn in getattr(module, "onnx_translations", {}).items()}


def export_onnx(model, example, path: Path, config: ExportConfig) -> list[str]:
    """Write ``model`` traced on ``example`` to ``path``; returns the output names (one per model output)."""
    import torch

    with torch.inference_mode():
        names = output_names(model(example))
    axes = {name: {0: "batch"} for name in [INPUT_NAME, *names]} if config.dynamic_batch else None
    kwargs: dict[str, Any] = {"input_names": [INPUT_NAME], "output_names": names, "dynamic_axes": axes,
                              "opset_version": config.opset, "dynamo": config.exporter == "dynamo"}
    translations = custom_translations(model)
    if translations and config.exporter != "dynamo":
        raise EdgepipeError("this model exports custom ops (NMS inside the graph) only with export.exporter: dynamo")
    if config.exporter == "dynamo":
        kwargs["external_data"] = False  # one self-contained file: easier to copy to a device
        if translations:
            kwargs["custom_translation_table"] = translations
    # The exporters print pages of progress and warnings; keep them for errors only.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    # onnxscript logs a whole traceback when its opset down-conversion fails; _ensure_opset redoes it below
    logging.getLogger("onnxscript").setLevel(logging.CRITICAL)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(path), **kwargs)
        except Exception as exc:
            raise EdgepipeError(f"ONNX export ({config.exporter}) failed: {first_line(exc)[:300]}; "
                                "try export.exporter: torchscript") from None
    _ensure_opset(path, config.opset)
    return names


def _ensure_opset(path: Path, opset: int) -> None:
    """The dynamo exporter writes opset 18 and converts down through onnxscript, which leaves the model at 18 when
    its converter fails (a Reduce op's axes input, torch 2.14 / onnxscript 0.7): convert with onnx's own converter
    then, and refuse when the requested opset still cannot be had (TensorRT 8.5 parses opsets up to 17)."""
    import onnx

    model = onnx.load(str(path))
    written = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), opset)
    if written == opset:
        return
    try:
        converted = onnx.version_converter.convert_version(model, opset)
    except Exception as exc:
        raise EdgepipeError(f"ONNX export wrote opset {written}, and converting it to the requested opset {opset} "
                            f"failed ({first_line(exc)[:200]}); set export.opset: {written} or export.exporter: "
                            "torchscript") from None
    if opset < 18:  # onnx's converter keeps this opset-18 attribute on the Reduce ops whose axes it moved back
        for node in converted.graph.node:
            if node.op_type in _AXES_INPUT_SINCE_18:
                kept = [a for a in node.attribute if not (a.name == "noop_with_empty_axes" and a.i == 0)]
                del node.attribute[:]
                node.attribute.extend(kept)
    onnx.save(converted, str(path))


# the Reduce ops whose axes became an input in opset 18 (ReduceSum moved at 13)
_AXES_INPUT_SINCE_18 = {"ReduceMax", "ReduceMin", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2",
                        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}


def parity(reference: np.ndarray, candidate: np.ndarray, task) -> dict[str, float]:
    """How two output batches differ: max abs difference, the same relative to the reference's largest
    magnitude (a deep net's logits of 30 differ more in absolute terms than LeNet's of 3, at the same
    precision), cosine similarity of the flattened outputs, and the task's agreement (top-1 agreement for a
    classifier, the PSNR between the two for an autoencoder)."""
    agreement, samples = task.agreement(reference, candidate), int(len(reference))
    # what the tolerance judges: the outputs themselves, or a detector's detections matched row to row
    reference, candidate = task.parity_pair(reference, candidate)
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    max_abs = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    norms = float(np.linalg.norm(reference) * np.linalg.norm(candidate))
    return {
        "max_abs_diff": max_abs,
        "max_rel_diff": max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")),
        "reference_max_abs": scale,
        "cosine": float(np.dot(reference.ravel(), candidate.ravel()) / norms) if norms > 0 else float(max_abs == 0),
        "agreement": agreement,
        "samples": samples,
    }
