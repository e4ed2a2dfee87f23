"""The Python fake (tests/fakes/tensorrt_fake.py) against the surfaces introspected from NVIDIA's real bindings.

tests/data/trt_api/<release>.json for 8.6 and later is what the real module says about itself
(tests/realtrt/introspect.py): which members are properties and which of them are settable, each enum member's
value, each method's pybind11 signature. A fake that gets one of these wrong lets edgepipe code pass here and
fail on a real TensorRT; this file reads only the committed JSON, so it runs with no wheel at all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fakes.tensorrt_fake import _Member, make_tensorrt

SURFACES = Path(__file__).resolve().parents[1] / "data" / "trt_api"
# (fake version, real surface): every fake release with a bindings wheel on PyPI
RELEASES = [("8.6.1", "8.6"), ("10.3.0", "10.3"), ("10.13.3.9", "10.13"), ("10.16.0.72", "10.16"),
            ("11.0.0.114", "11.0"), ("11.4.0.106", "11.4")]
BOOKKEEPING = {"calls", "recorder", "memory", "cudart"}


def _real(release: str) -> dict:
    surface = json.loads((SURFACES / f"{release}.json").read_text())
    assert surface["source"]["kind"] == "wheel", f"{release}.json is not introspected from a real module"
    return surface


def _owner_of(surface: dict, cls: str, member: str) -> str | None:
    """The class (``cls`` or a base) that binds ``member``."""
    if member in surface["classes"].get(cls, []):
        return cls
    for base in surface["bases"].get(cls, []):
        found = _owner_of(surface, base, member)
        if found:
            return found
    return None


def _fake_classes(trt):
    for name, value in vars(trt).items():
        if not name.startswith("_") and name not in BOOKKEEPING and isinstance(value, type) and hasattr(value, "REAL"):
            yield value


def _parameters(signature: str) -> list[str]:
    """Parameter names of one pybind11 signature line, self excluded: "(self: X, name: str, shape: tuple)"."""
    inside = signature[1:signature.rindex(")")] if ")" in signature else ""
    names = re.findall(r"(?:^|, )(\*{0,2}\w+)(?=:|,|$| =)", inside)
    return [n for n in names if n != "self"]


@pytest.mark.parametrize(("version", "release"), RELEASES)
def test_fake_enums_carry_the_real_values(version, release):
    surface = _real(release)
    trt = make_tensorrt(version)
    wrong = []
    for enum in _fake_classes(trt):
        if enum.REAL not in surface["enum_values"]:
            continue
        real = surface["enum_values"][enum.REAL]
        for name, member in vars(enum).items():
            if isinstance(member, _Member) and real.get(name) != member.value:
                wrong.append(f"{enum.REAL}.{name}: fake {member.value}, real {real.get(name, 'absent')}")
    assert wrong == [], f"the {version} fake's enum values differ from TensorRT {release}'s: {wrong}"


@pytest.mark.parametrize(("version", "release"), RELEASES)
def test_what_the_fake_lets_code_assign_the_real_module_lets_too(version, release):
    surface = _real(release)
    trt = make_tensorrt(version)
    wrong = []
    for klass in _fake_classes(trt):
        for name in sorted(getattr(klass, "SETTABLE", ())):
            owner = _owner_of(surface, klass.REAL, name)
            prop = surface["properties"].get(f"{owner}.{name}")
            if prop is None or not prop["settable"]:
                wrong.append(f"{klass.REAL}.{name} ({'read-only' if prop else 'no such property'})")
    assert wrong == [], f"the {version} fake lets code assign what TensorRT {release} refuses: {wrong}"


@pytest.mark.parametrize(("version", "release"), RELEASES)
def test_fake_methods_are_real_methods_with_the_real_keywords(version, release):
    """A property in the fake must be a property in the real module (and a method a method: ``engine.num_io_tensors``
    vs ``engine.num_io_tensors()``), and the fake's parameter names are pybind11's, so keyword calls agree."""
    surface = _real(release)
    trt = make_tensorrt(version)
    wrong = []
    for klass in _fake_classes(trt):
        if klass.REAL in surface["enums"]:
            continue
        for cls in klass.__mro__:
            if cls.__module__ == "builtins":
                continue
            for name, value in vars(cls).items():
                if name.startswith("_") or name in ("REAL", "SETTABLE"):
                    continue
                owner = _owner_of(surface, klass.REAL, name) or klass.REAL
                key = f"{owner}.{name}"
                if isinstance(value, property):
                    if key not in surface["properties"]:
                        wrong.append(f"{klass.REAL}.{name}: a property in the fake, not in the real module")
                elif callable(value):
                    if key not in surface["signatures"]:
                        wrong.append(f"{klass.REAL}.{name}: a method in the fake, not in the real module")
                        continue
                    fake_names = list(value.__code__.co_varnames[1:value.__code__.co_argcount])
                    real = [_parameters(line) for line in surface["signatures"][key]]
                    # the fake may leave out trailing parameters the real call defaults (create_execution_context)
                    if not any(names[:len(fake_names)] == fake_names for names in real):
                        wrong.append(f"{klass.REAL}.{name}{tuple(fake_names)}: real {real}")
    assert wrong == [], f"the {version} fake's methods differ from TensorRT {release}'s: {wrong}"


def test_the_real_surfaces_record_what_pybind11_checks():
    """Spot checks that the introspection records real facts (so the tests above are not vacuous)."""
    assert _real("11.4")["signatures"]["Builder.create_network"] == [
        "(self: tensorrt.Builder, flags: typing.SupportsInt = 0) -> tensorrt.INetworkDefinition"]
    assert _real("10.16")["properties"]["ICudaEngine.num_io_tensors"]["settable"] is False
    assert _real("10.16")["properties"]["IBuilderConfig.DLA_core"] == {"settable": True, "type": "int"}
    assert "FP16" in _real("10.16")["enum_values"]["BuilderFlag"]
    assert "FP16" not in _real("11.0")["enums"]["BuilderFlag"]
    assert _real("8.6")["enum_values"]["BuilderFlag"]["SPARSE_WEIGHTS"] == 8  # 8.x still numbers STRICT_TYPES 4
