"""Drive the TensorRT builder: network, ONNX parser, builder config, optimization profile, timing cache.

The builder code is the device runtime's (edgepipe/device/runtime.py), so `edgepipe build` on a workstation
and `python3 edgepipe_device.py build` on a Jetson set the same things in the same order; this module adds
what needs the full install (onnx for naming the parser's failing nodes) and edgepipe's error type.
Checked against each release's API surface by tests/unit/test_trt_api_surface.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from edgepipe.device import runtime as device
from edgepipe.errors import device_errors
from edgepipe.trt.inputs import BuildPlan
from edgepipe.trt.settings import BuildSettings

_MAX_SHOWN_PARSER_ERRORS = 10


def make_logger(trt: ModuleType) -> Any:
    """A trt.ILogger that keeps warnings and errors, so a failed build can say TensorRT's own reason."""
    return device.make_logger(trt)


@dataclass
class BuildResult:
    serialized_engine: Any  # trt.IHostMemory (buffer protocol)
    input_name: str
    input_shape: tuple[int, ...]
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    applied: dict[str, Any] = field(default_factory=dict)  # what was set on the config, for the manifest


def parser_errors(parser: Any, onnx_path: Path) -> str:
    """The parser's own errors, one per node: "node 3 (Conv 'conv1'): <desc>" (the device runtime, without onnx,
    says "node 3: <desc>")."""
    import onnx

    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        node = error.node()
        where = "model"
        if 0 <= node < len(nodes):
            where = f"node {node} ({nodes[node].op_type} {nodes[node].name!r})"
        lines.append(f"{where}: {error.desc()}")
    shown = lines[:_MAX_SHOWN_PARSER_ERRORS]
    if len(lines) > len(shown):
        shown.append(f"... {len(lines) - len(shown)} more")
    return "; ".join(shown) or "no error reported"


def check_release_supports(trt: ModuleType, settings: BuildSettings) -> None:
    """Refuse, in one line and before any work, a setting the running TensorRT release does not have."""
    with device_errors():
        device.check_release_supports(trt, settings)


def configure(trt: ModuleType, builder: Any, network: Any, config: Any, plan: BuildPlan, settings: BuildSettings,
              timing_cache_bytes: bytes | None) -> tuple[dict[str, Any], Any, tuple]:
    """Apply every setting to ``config``; returns (what was applied, the calibrator or None, profile)."""
    with device_errors():
        return device.configure(trt, builder, network, config, plan, settings, timing_cache_bytes)


def build_serialized_engine(trt: ModuleType, plan: BuildPlan, settings: BuildSettings) -> BuildResult:
    """Parse ``plan.onnx`` and build a serialized engine; EdgepipeError with TensorRT's reason on failure."""
    with device_errors():
        result = device.build_serialized_engine(trt, plan, settings, describe_parser_errors=parser_errors)
    return BuildResult(result["engine"], result["input_name"], result["input_shape"], result["profile"],
                       result["applied"])


def make_runtime(trt: ModuleType, logger: Any, settings: dict[str, Any]) -> Any:
    """A trt.Runtime set up for an engine built with ``settings`` (its manifest's): what deserialization needs."""
    return device.make_runtime(trt, logger, settings)


def check_engine_deserializes(trt: ModuleType, engine_bytes: Any, settings: BuildSettings) -> Any:
    """Load the engine back (the stage checks its result before returning)."""
    with device_errors():
        return device.check_engine_deserializes(trt, engine_bytes, settings.to_json())
