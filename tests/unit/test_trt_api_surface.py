"""Every TensorRT name the fake offers and the production code touches exists in the real API.

The real surface is tests/data/trt_api/10.13.json, introspected from NVIDIA's own 10.13 bindings module
(tests/realtrt/). Names that exist only in TensorRT 8.x are allowed explicitly below, each with NVIDIA's
documentation as the reason; TensorRT 11 removals are checked the other way (the 11.x fake must lack them).
tests/realtrt/test_real_surfaces.py repeats the production check against every pinned release.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: home of the fakes package

from fakes.tensorrt_fake import make_tensorrt  # noqa: E402
from helpers.trt_names import REMOVED_IN_11, TRT8_ONLY, production_names  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAKE_BOOKKEEPING = {"calls", "recorder", "memory", "cudart"}


SURFACE = REPO / "tests" / "data" / "trt_api" / "10.13.json"  # introspected from NVIDIA's 10.13 bindings


@pytest.fixture(scope="module")
def api():
    surface = json.loads(SURFACE.read_text())
    classes = {name: set(members) for name, members in surface["classes"].items()}
    for name, members in surface["enums"].items():
        classes.setdefault(name, set()).update(members)
    classes.update({name: classes.get(name, set()) for name in surface["all_classes"]})
    bases = surface["bases"]
    module = set(surface["module"]) | set(surface["all_classes"]) | {"__version__"}

    def members(cls: str) -> set[str]:
        found = set(classes.get(cls, ()))
        for base in bases.get(cls, []):
            found |= members(base)
        return found

    return classes, members, module


def test_surface_is_the_real_10_13_api(api):
    classes, members, module = api
    assert json.loads(SURFACE.read_text())["source"]["kind"] == "wheel"
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


def test_production_code_touches_only_real_names(api):
    classes, members, module = api
    found = production_names()
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
