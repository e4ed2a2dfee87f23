"""The committed API surfaces (tests/data/trt_api/<release>.json) are what NVIDIA's real bindings say.

Each pinned wheel's module is imported in a subprocess over the link-only shims and introspected again; a
difference means the JSON was edited by hand or the pin moved without regenerating
(``python tests/realtrt/surfaces.py``).
"""

from __future__ import annotations

import json

import pytest

from realtrt.releases import RELEASES, require_release
from realtrt.surfaces import SURFACES, introspect


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.key)
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
