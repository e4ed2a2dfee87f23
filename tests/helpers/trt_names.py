"""The TensorRT names edgepipe's production code touches, and the ones it guards by release.

Shared by tests/unit/test_trt_api_surface.py (the real 10.13 surface, the Python fake) and
tests/realtrt/test_real_surfaces.py (every pinned release's real module).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = [
    *sorted((REPO / "edgepipe" / "trt").glob("*.py")),
    REPO / "edgepipe" / "runners" / "tensorrt.py",
    # the device runtime, as one module or split into a package (edgepipe/device/)
    *sorted((REPO / "edgepipe" / "device").rglob("*.py")),
]

MIGRATION_8_TO_10 = (
    "removed in TensorRT 10.0: https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/"
    "tensorrt-8x-to-10x-python-api-reference.html (Removed Python APIs and Replacements)"
)
# TensorRT 8.x-only names (used for JetPack 4.6 / TensorRT 8.2 on the Jetson Nano), absent from 10.13.
TRT8_ONLY = {
    "IBuilderConfig.max_workspace_size": "deprecated in 8.4 for set_memory_pool_limit; " + MIGRATION_8_TO_10,
    "ICudaEngine.num_bindings": MIGRATION_8_TO_10,
    "ICudaEngine.get_binding_name": MIGRATION_8_TO_10,
    "ICudaEngine.binding_is_input": MIGRATION_8_TO_10,
    "ICudaEngine.get_binding_shape": MIGRATION_8_TO_10,
    "ICudaEngine.get_binding_dtype": MIGRATION_8_TO_10,
    "ICudaEngine.get_profile_shape": "superseded by get_tensor_profile_shape; " + MIGRATION_8_TO_10,
    "IExecutionContext.execute_async_v2": "superseded by execute_async_v3; " + MIGRATION_8_TO_10,
    "IExecutionContext.set_binding_shape": "superseded by set_input_shape; " + MIGRATION_8_TO_10,
    "IExecutionContext.get_binding_shape": "superseded by get_tensor_shape; " + MIGRATION_8_TO_10,
}
# Removed in TensorRT 11 (https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/
# tensorrt-10x-to-11x-python-api-reference.html): the 11.x fake must not offer them.
REMOVED_IN_11 = [
    "BuilderFlag.FP16",
    "BuilderFlag.INT8",
    "IBuilderConfig.int8_calibrator",
    "IBuilderConfig.set_calibration_profile",
]
# Objects in production code, by variable name -> the real class they hold.
VARIABLE_CLASSES = {
    "builder": "Builder",
    "config": "IBuilderConfig",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "error": "ParserError",
    "tensor": "ITensor",
    "profile": "IOptimizationProfile",
    "engine": "ICudaEngine",
    "_engine": "ICudaEngine",
    "_context": "IExecutionContext",
    "context": "IExecutionContext",
    "runtime": "Runtime",
    "_runtime": "Runtime",
}


def production_names() -> list[tuple[str, str, str | None, int]]:
    """(file, owner, member, line): trt.X / trt.X.Y chains and attributes of known TensorRT objects."""
    found = []
    for path in PRODUCTION:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id == "trt":
                found.append((path.name, node.attr, None, node.lineno))
            elif (
                isinstance(value, ast.Attribute)
                and isinstance(value.value, ast.Name)
                and value.value.id == "trt"
            ):
                found.append((path.name, value.attr, node.attr, node.lineno))
            else:
                holder = (
                    value.id
                    if isinstance(value, ast.Name)
                    else value.attr
                    if isinstance(value, ast.Attribute)
                    else None
                )
                if holder in VARIABLE_CLASSES:
                    found.append((path.name, VARIABLE_CLASSES[holder], node.attr, node.lineno))
    return found
