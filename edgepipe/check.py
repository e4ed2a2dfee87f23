"""Offline TensorRT preflight: will this ONNX build and run on that target? No GPU, no TensorRT needed.

    findings = check_onnx("model.int8.onnx", "jetson-orin-nano", precision="int8")
    if has_errors(findings): ...

Rules live in edgepipe/preflight/ (operators, QDQ, dynamic axes, FP16 range, DLA); this module loads
the model, picks the TensorRT release to check against, and runs them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

from edgepipe.errors import EdgepipeError
from edgepipe.preflight import SEVERITY_ORDER, Finding
from edgepipe.preflight.dla import check_dla
from edgepipe.preflight.graph_rules import check_dynamic_axes, check_fp16_range, check_qdq, has_qdq
from edgepipe.preflight.low_precision import check_low_precision, low_precisions
from edgepipe.preflight.operators import check_operators, iter_nodes
from edgepipe.targets import TargetProfile, get_target, parse_version, require_dla

__all__ = ["Finding", "check_onnx", "check_model", "has_errors", "load_onnx"]


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX file (with external data beside it); a missing or non-ONNX file is a user error."""
    path = Path(path)
    if not path.is_file():
        raise EdgepipeError(f"no ONNX file at {path}; pass the path of a .onnx model")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, onnx raises on missing external data
        raise EdgepipeError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.graph.node and not model.graph.output:
        raise EdgepipeError(f"{path} is not an ONNX model (it parsed to an empty graph)")
    return model


def check_model(
    model: onnx.ModelProto,
    target: TargetProfile | str,
    *,
    dla: bool = False,
    precision: str | None = None,
    tensorrt: str | None = None,
) -> list[Finding]:
    """All preflight findings for an in-memory model, most severe first.

    precision: what the build will use ("fp32", "fp16", "int8"); None means not decided yet, which
    makes FP16 overflow a warning instead of an error. tensorrt: the release to check against,
    default the oldest the target ships (the strictest parser).
    """
    profile = get_target(target) if isinstance(target, str) else target
    tensorrt_version = tensorrt or profile.checked_tensorrt
    findings: list[Finding] = []
    if tensorrt and not profile.supports_tensorrt(tensorrt):
        findings.append(
            Finding(
                "warning",
                "precision",
                f"TensorRT {tensorrt} is not a release {profile.name} runs ({profile.tensorrt_text()})",
            )
        )
    if precision is not None and precision not in profile.precisions:
        findings.append(
            Finding(
                "error",
                "precision",
                f"{profile.name} ({profile.sm}) cannot run {precision}; it supports "
                f"{', '.join(sorted(profile.precisions))}",
            )
        )

    findings += check_operators(model, tensorrt_version)
    findings += check_low_precision(model, profile)
    quantized = has_qdq(model) and not low_precisions(model)  # FP8/FP4 Q/DQ are not INT8 quantization
    if quantized:
        if "int8" not in profile.precisions:
            findings.append(
                Finding(
                    "error",
                    "precision",
                    f"the model has QuantizeLinear/DequantizeLinear (INT8) nodes but "
                    f"{profile.name} ({profile.sm}) has no INT8 support: deploy the FP16 ONNX instead",
                )
            )
        findings += check_qdq(model)
    findings += check_dynamic_axes(model, dla=dla)
    if precision in ("fp16", "int8") or (precision is None and "fp16" in profile.precisions):
        findings += check_fp16_range(model, overflow_severity="error" if precision else "warning")
    if dla:
        require_dla(profile, 0)
        op_types = Counter(node.op_type for node in iter_nodes(model.graph))
        findings += check_dla(dict(op_types), profile, precision, tensorrt_version)
        if quantized and parse_version(tensorrt_version)[0] < 10:
            findings.append(
                Finding(
                    "warning",
                    "dla",
                    f"DLA with TensorRT {tensorrt_version} does not take explicit "
                    "(QDQ) quantization: build INT8 for DLA from the FP32 ONNX and trt.calib.cache",
                )
            )
    return sorted(findings, key=lambda finding: SEVERITY_ORDER[finding.severity])


def check_onnx(
    path: str | Path,
    target: TargetProfile | str,
    *,
    dla: bool = False,
    precision: str | None = None,
    tensorrt: str | None = None,
) -> list[Finding]:
    """All preflight findings for the ONNX file at `path` on `target` (see check_model)."""
    return check_model(load_onnx(path), target, dla=dla, precision=precision, tensorrt=tensorrt)


def has_errors(findings: list[Finding]) -> bool:
    """Whether something in `findings` will fail on the device."""
    return any(finding.severity == "error" for finding in findings)
