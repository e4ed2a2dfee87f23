"""The comparison that makes the case: naive whole-graph INT8 beside edgepipe's accuracy-aware INT8, on the same
test split, with the same calibration ranges.

Naive is what a user gets without edgepipe: every node of their graph that onnxruntime can quantize is quantized
(a detector's head, its output Concat and any decode inside it included), per-tensor weights, onnxruntime's
``quantize_static`` defaults (QDQ, int8, MinMax on the calibration set) — what a plain TensorRT INT8 build with an
implicit calibrator, or a default onnxruntime quantization, runs. Aware is what quantize ships: per-channel
weights, each track's own activation format, the decode kept in float, and the per-layer fallback within the
budget. Every row says how much of it is INT8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

NAIVE = "naive-int8"


def naive_int8(model: Path, out: Path, method: str, ranges_path: Path) -> Path:
    """``model`` with every quantizable node in INT8 (onnxruntime's defaults), from the saved calibration ranges.
    The decode edgepipe appended to an imported graph stays float: it is not the user's model, and without
    edgepipe it would run in numpy after the engine."""
    import onnx
    from onnxruntime.quantization import QuantFormat, quantize_static

    from edgepipe.foreign.decode import DECODE_PREFIX
    from edgepipe.quant.tracks import _onnx_temporaries, calibration_method, quiet_onnxruntime, strip_for_deploy

    appended = [node.name for node in onnx.load(str(model), load_external_data=False).graph.node
                if node.name.startswith(DECODE_PREFIX)]
    with quiet_onnxruntime(), _onnx_temporaries(model, Path(out).parent, f"{Path(out).name} (naive INT8)"):
        quantize_static(model, out, None, quant_format=QuantFormat.QDQ, calibrate_method=calibration_method(method),
                        calibration_cache_path=ranges_path, nodes_to_exclude=appended, op_types_to_quantize=None)
    strip_for_deploy(out)
    return out


def compare(reference: Path, naive: Path, aware: dict[str, Path], test, task, labels: list[str]) -> dict[str, Any]:
    """Every metric of the FP32 reference, the naive graph and each aware artifact on ``test``, with its drop (in the
    task's unit, on the primary metric) and its INT8 coverage."""
    from edgepipe.quant.coverage import int8_coverage
    from edgepipe.runners.base import infer_in_batches
    from edgepipe.runners.onnxruntime import OrtRunner

    targets = task.targets(test)
    rows = []
    for name, path in {"fp32": reference, NAIVE: naive, **aware}.items():
        with OrtRunner(path) as runner:
            outputs = np.asarray(infer_in_batches(runner, test, 256))
        metrics = task.metrics(outputs, targets, labels)
        rows.append({"name": name, "metrics": _scalars(metrics), "score": metrics[task.metric],
                     "int8": int8_coverage(path)})
    for row in rows:
        row["drop"] = round(task.drop(rows[0]["score"], row["score"]), 4)
    return {"split": "test", "samples": int(len(targets)), "metric": task.metric,
            "what": "naive: every quantizable node INT8, per-tensor weights, onnxruntime's quantize_static "
                    "defaults; aware: what quantize ships", "rows": rows}


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are single numbers (a detector's per-class AP and PR curves stay in eval's report)."""
    return {key: round(float(value), 6) for key, value in metrics.items() if isinstance(value, (int, float))}
