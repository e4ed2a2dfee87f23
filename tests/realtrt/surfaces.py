"""Regenerate tests/data/trt_api/<release>.json from the real bindings of every pinned wheel.

    EDGEPIPE_TRT_WHEELS=/path/to/wheels python tests/realtrt/surfaces.py [RELEASE ...]

Each file is what tests/realtrt/introspect.py prints when the release's real module is imported over the
link-only shims; tests/realtrt/test_real_bindings.py checks the committed files still say exactly that.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: home of the realtrt package

from realtrt.releases import BY_KEY, HERE, REPO, WITH_SURFACE, link_only_shims, run_with_real_bindings  # noqa: E402

SURFACES = REPO / "tests" / "data" / "trt_api"


def introspect(key: str) -> str:
    release = BY_KEY[key]
    result = run_with_real_bindings(release, link_only_shims(release), HERE / "introspect.py", release.key,
                                    release.distribution, release.version)
    if result.returncode != 0:
        raise RuntimeError(f"introspecting {release.requirement} failed:\n{result.stderr[-2000:]}")
    return result.stdout


if __name__ == "__main__":
    for key in sys.argv[1:] or [release.key for release in WITH_SURFACE]:
        (SURFACES / f"{key}.json").write_text(introspect(key))
        print(f"wrote {SURFACES / f'{key}.json'}")
