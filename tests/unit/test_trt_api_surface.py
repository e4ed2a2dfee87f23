"""Every TensorRT name the fake offers and the production code touches exists in the real API.

The real surface is the tensorrt-stubs 10.13 package's .pyi files, read as TEXT (they are not
importable). Names that exist only in TensorRT 8.x are allowed explicitly below, each with NVIDIA's
documentation as the reason; TensorRT 11 removals are checked the other way (the 11.x fake must lack them).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: home of the fakes package

from fakes.tensorrt_fake import make_tensorrt  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = [
    *sorted((REPO / "edgepipe" / "trt").glob("*.py")),
    REPO / "edgepipe" / "runners" / "tensorrt.py",
    *sorted((REPO / "edgepipe" / "device").glob("*.py")),  # the device runtime package
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
FAKE_BOOKKEEPING = {"calls", "recorder", "memory", "cudart"}


def _stub_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("tensorrt_bindings")
    try:
        init = Path(str(metadata.distribution("tensorrt-stubs").locate_file("tensorrt/__init__.pyi")))
    except metadata.PackageNotFoundError:
        init = None
    if spec is None or not spec.submodule_search_locations or init is None or not init.is_file():
        pytest.fail(
            "tensorrt-stubs is not installed; `make install` installs it (tensorrt-stubs==10.13.0.35.1)"
        )
    return Path(spec.submodule_search_locations[0]) / "tensorrt.pyi", init


def _parse_pyi(text: str) -> tuple[dict[str, set[str]], dict[str, list[str]], set[str]]:
    classes: dict[str, set[str]] = {}
    bases: dict[str, list[str]] = {}
    module: set[str] = set()
    current = None
    for line in text.splitlines():
        top = re.match(r"class (\w+)(?:\((.*)\))?:", line)
        if top:
            current = top.group(1)
            classes[current] = set()
            bases[current] = [b.strip() for b in (top.group(2) or "").split(",") if b.strip()]
            continue
        if re.match(r"\S", line):
            current = None
            name = re.match(r"(?:def |from \S+ import )?(\w+)", line)
            if name:
                module.add(name.group(1))
            continue
        member = re.match(r"    (?:def |class )?(\w+)\s*[:(]", line)
        if current and member:
            classes[current].add(member.group(1))
    for match in re.finditer(r"__all__ = \[(.*?)\]", text):
        module |= set(re.findall(r"'(\w+)'", match.group(1)))
    return classes, bases, module


@pytest.fixture(scope="module")
def api():
    bindings, init = _stub_files()
    classes, bases, module = _parse_pyi(bindings.read_text())
    module |= _parse_pyi(init.read_text())[2]

    def members(cls: str) -> set[str]:
        found = set(classes.get(cls, ()))
        for base in bases.get(cls, []):
            found |= members(base)
        return found

    return classes, members, module


def test_stub_surface_is_the_10_13_api(api):
    classes, members, module = api
    assert "__version__" in module and "Builder" in classes
    assert {"set_memory_pool_limit", "int8_calibrator", "DLA_core"} <= members("IBuilderConfig")
    assert {"execute_async_v3", "set_tensor_address"} <= members("IExecutionContext")
    assert "execute_async_v2" not in members("IExecutionContext")  # so the allow-list is needed


def _fake_names(trt) -> list[tuple[str, str | None]]:
    """("Class", member) and ("name", None) for everything public the fake offers."""
    names: list[tuple[str, str | None]] = []
    for name, value in vars(trt).items():
        if name.startswith("_") or name in FAKE_BOOKKEEPING:
            continue
        if isinstance(value, type) and hasattr(value, "REAL"):
            own: set[str] = set(getattr(value, "SETTABLE", ()))
            for klass in value.__mro__:
                if klass.__module__ != "builtins":
                    own |= {k for k in vars(klass) if not k.startswith("_") and k not in ("REAL", "SETTABLE")}
            names.append((value.REAL, None))
            names += [(value.REAL, member) for member in sorted(own)]
        else:
            names.append((name, None))
    return names


@pytest.mark.parametrize("version", ["8.2.1", "8.6.2", "10.3.0", "10.13.0.35", "11.0.0"])
def test_fake_offers_only_real_names(api, version):
    classes, members, module = api
    unknown = []
    for owner, member in _fake_names(make_tensorrt(version)):
        if member is None:
            if owner not in module and owner not in classes:
                unknown.append(owner)
        elif member not in members(owner) and f"{owner}.{member}" not in TRT8_ONLY:
            unknown.append(f"{owner}.{member}")
    assert unknown == [], f"the fake offers names TensorRT 10.13 lacks: {unknown}"


def test_fake_11_lacks_what_tensorrt_11_removed():
    trt = make_tensorrt("11.0.0")
    for dotted in REMOVED_IN_11:
        owner, member = dotted.split(".")
        holder = getattr(trt, owner)
        assert not hasattr(holder, member) and member not in getattr(holder, "SETTABLE", ()), dotted
    assert not hasattr(trt, "IInt8EntropyCalibrator2")


def _production_names() -> list[tuple[str, str, str | None, int]]:
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


def test_production_code_touches_only_real_names(api):
    classes, members, module = api
    found = _production_names()
    assert len(found) > 40, "the scan found too little: did the variable names change?"
    unknown = []
    for file, owner, member, line in found:
        if owner == "__version__" and member is None:
            continue
        if member is None:
            ok = owner in module or owner in classes
        else:
            ok = member in members(owner) or f"{owner}.{member}" in TRT8_ONLY
        if not ok:
            unknown.append(f"{file}:{line} {owner}.{member}" if member else f"{file}:{line} trt.{owner}")
    assert unknown == [], f"production code uses names TensorRT 10.13 lacks: {unknown}"


def test_subclassed_interfaces_override_real_methods(api):
    _, members, _ = api
    from edgepipe.device import calib_cache, loader

    trees = [ast.parse(Path(module.__file__).read_text()) for module in (calib_cache, loader)]
    defined = {n.name for tree in trees for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    needed = {"get_batch_size", "get_batch", "read_calibration_cache", "write_calibration_cache"}
    assert needed <= defined and needed <= members("IInt8EntropyCalibrator2")
    assert "log" in defined
    assert "log" in members("ILogger")


def test_the_settings_table_names_only_real_builder_api(api):
    """The build settings are applied by name from edgepipe/device/settings.py (getattr, which the scan above cannot
    see): every IBuilderConfig attribute, BuilderFlag and enum member the table names is in the 10.13 API."""
    classes, members, _ = api
    from edgepipe.device.settings import OPTIONS

    named = 0
    for option in OPTIONS:
        if getattr(option, "attribute", ""):
            assert option.attribute in members("IBuilderConfig"), option.name
            named += 1
        if getattr(option, "builder_flag", ""):
            assert option.builder_flag in members("BuilderFlag"), option.name
            named += 1
        if getattr(option, "enum", ""):
            assert set(option.members) <= members(option.enum), option.name
            named += 1
        for member, _, _ in getattr(option, "levels", {}).values():
            assert member in members("HardwareCompatibilityLevel"), option.name
            named += 1
    assert named >= 8
