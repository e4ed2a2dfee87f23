"""The committed API surfaces (tests/data/trt_api/<release>.json) are what NVIDIA's real bindings say.

Each pinned wheel's module is imported in a subprocess over the link-only shims and introspected again; a
difference means the JSON was edited by hand or the pin moved without regenerating
(``python tests/realtrt/surfaces.py``).
"""

from __future__ import annotations

import json

import pytest
from helpers.trt_names import TRT8_ONLY, production_names

from realtrt.releases import RELEASES, WITH_SURFACE, require_release
from realtrt.surfaces import SURFACES, introspect


@pytest.mark.parametrize("release", WITH_SURFACE, ids=lambda r: r.key)
def test_committed_surface_is_what_the_real_module_says(release):
    require_release(release)
    real = json.loads(introspect(release.key))
    committed = json.loads((SURFACES / f"{release.key}.json").read_text())
    assert real["source"]["module_version"] == release.version
    assert committed == real, f"regenerate: python tests/realtrt/surfaces.py {release.key}"


def test_the_cu11_and_cu12_builds_of_10_13_bind_the_same_api():
    """The CUDA 11 wheel of a 10.x release is the same API (edgepipe does not branch on the CUDA major)."""
    cu11 = json.loads((SURFACES / "10.13-cu11.json").read_text())
    cu12 = json.loads((SURFACES / "10.13.json").read_text())
    assert cu11["classes"] == cu12["classes"] and cu11["enum_values"] == cu12["enum_values"]


# Names production code touches that a release lacks, because the code reaches them only on the releases that
# have them (hasattr, the major version, or the build plan), per major release.
GUARDED = {
    8: {"NetworkDefinitionCreationFlag.STRONGLY_TYPED"},  # network_flags: hasattr, 10.0+
    10: set(TRT8_ONLY),  # the bindings API of 8.0-8.4: Engine.named is False only there
    11: set(TRT8_ONLY) | {"IBuilderConfig.int8_calibrator", "IBuilderConfig.set_calibration_profile",
                          "IInt8EntropyCalibrator2.__init__", "trt.IInt8EntropyCalibrator2",
                          "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"},  # plan_build: never implicit INT8 on 11
}


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.key)
def test_production_code_touches_only_names_each_release_has(release):
    """Every PyPI release pinned here (all of 10.x and 11.x): the TensorRT names in edgepipe/trt, the TensorRT
    runner and the device runtime exist in the real module, except those the code guards by release."""
    require_release(release)
    surface = json.loads((SURFACES / f"{release.key}.json").read_text()) if release.surface else \
        json.loads(introspect(release.key))
    assert surface["source"]["module_version"] == release.version

    def members(cls: str) -> set[str]:
        found = set(surface["classes"].get(cls, [])) | set(surface["enums"].get(cls, []))
        for base in surface["bases"].get(cls, []):
            found |= members(base)
        return found

    top = set(surface["module"]) | set(surface["all_classes"])
    missing = set()
    for _, owner, member, _ in production_names():
        if owner == "__version__":
            continue
        if member is None and owner not in top:
            missing.add(f"trt.{owner}")
        elif member is not None and member not in members(owner):
            missing.add(f"{owner}.{member}")
    unguarded = sorted(missing - GUARDED[release.major])
    assert unguarded == [], f"TensorRT {release.version} lacks {unguarded}"
