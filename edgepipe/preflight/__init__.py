"""Offline TensorRT preflight rules, one module per concern; `edgepipe.check` runs them on a model.

operators.py  ONNX ops against the TensorRT ONNX parser's support matrix (per TensorRT release)
graph_rules.py  QDQ (symmetric int8, zero point 0, per-channel axis), dynamic axes, FP16 range
dla.py  which layers the DLA can take, for `--dla`
low_precision.py  FP8 / FP4 tensors against what the target's tensor cores run
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    """One thing the preflight noticed. `error` means the build or the device run will fail."""

    severity: Severity
    rule: str  # "operator", "opset", "qdq", "dynamic-axes", "fp16-range", "dla", "precision"
    message: str
    node: str | None = None  # node, tensor or op type the finding is about

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)
