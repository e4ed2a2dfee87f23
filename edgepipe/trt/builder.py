"""Drive the TensorRT builder: network, ONNX parser, builder config, optimization profile, timing cache.

The builder code is the device runtime's (edgepipe/device/builder.py), so `edgepipe build` on a workstation
and `python3 edgepipe_device.py build` on a Jetson set the same things in the same order; this module adds
what needs the full install (onnx for naming the parser's failing nodes).
Checked against each release's API surface by tests/unit/test_trt_api_surface.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from edgepipe.device import builder as device
from edgepipe.device.settings import BuildSettings
from edgepipe.trt.inputs import BuildPlan

_MAX_SHOWN_PARSER_ERRORS = 10


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


def build_serialized_engine(trt: ModuleType, plan: BuildPlan, settings: BuildSettings) -> BuildResult:
    """Parse ``plan.onnx`` and build a serialized engine; EdgepipeError with TensorRT's reason on failure."""
    result = device.build_serialized_engine(trt, plan, settings, describe_parser_errors=parser_errors)
    return BuildResult(result["engine"], result["input_name"], result["input_shape"], result["profile"],
                       result["applied"])
