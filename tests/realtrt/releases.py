"""NVIDIA's real TensorRT Python bindings, loaded on a CPU machine over stand-in core libraries.

The bindings wheels on PyPI (``tensorrt-bindings``, ``tensorrt-cu1x-bindings``) hold NVIDIA's compiled pybind11
module ``tensorrt_bindings/tensorrt.so``. It links a dozen entry points of the TensorRT core (libnvinfer,
libnvonnxparser, libnvinfer_plugin; libnvparsers on 8.x), which PyPI cannot serve. Tiny C files in shims/
export those symbols under the right SONAMEs, so the real module imports in a subprocess whose
LD_LIBRARY_PATH points at them; the fake C++ core (tests/realtrt/core/) replaces libnvinfer and
libnvonnxparser where a test needs objects that work.

The wheels are pinned here, once: ``python tests/realtrt/releases.py download`` (``make trt-wheels``) fetches
them into the cache directory; a test whose wheel is absent skips with one line naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHIMS = HERE / "shims"
CORE = HERE / "core"
HEADERS = CORE / "headers"  # tensorrt-<tag>.tar.xz
WHEELS_ENV = "EDGEPIPE_TRT_WHEELS"


@dataclass(frozen=True)
class Release:
    """One bindings wheel: ``key`` names its surface file (tests/data/trt_api/<key>.json)."""

    key: str
    distribution: str
    version: str
    headers: str | None = None  # core/headers/tensorrt-<tag>.tar.xz the fake core compiles against
    surface: bool = True  # its surface is committed as tests/data/trt_api/<key>.json

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def lib_version(self) -> int:
        """NV_TENSORRT_VERSION (NvInferVersion.h): 8.6.1 -> 8601, 10.3.0 -> 100300."""
        major, minor, patch = (int(p) for p in self.version.split(".")[:3])
        return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


# Every release in edgepipe/targets.py that has a bindings wheel on PyPI, plus the newest 11.x and the cu11 build
# of one 10.x (pip index versions tensorrt-cu12-bindings, December 2026). 8.0-8.5 are Jetson-only: no wheel.
# ``headers``: the NVIDIA/TensorRT tag whose include/ the fake core compiles against (same major.minor and, where
# NVIDIA tagged it, the same build: v10.16 is 10.16.0.72). 11.4 has no tag in NVIDIA/TensorRT: Level 1 only.
# The releases in edgepipe/targets.py with a wheel: 8.6 (JetPack 6.0's 8.6.2), 10.3 (JetPack 6.1/6.2), 10.13
# (JetPack 7.0), 10.16 (JetPack 7.2), 11.4 (JetPack 7.2.2, the desktops' newest), 10.8 (desktop-blackwell's
# oldest); every other 10.x/11.x on PyPI is imported and checked too (no committed surface: ``surface=False``).
RELEASES = (
    Release("8.6", "tensorrt-bindings", "8.6.1", "v8.6.1"),
    Release("10.3", "tensorrt-cu12-bindings", "10.3.0", "v10.3.0"),
    Release("10.13", "tensorrt-cu12-bindings", "10.13.3.9", "v10.13.3"),
    Release("10.13-cu11", "tensorrt-cu11-bindings", "10.13.0.35", "v10.13.3"),
    Release("10.16", "tensorrt-cu12-bindings", "10.16.0.72", "v10.16"),
    Release("11.0", "tensorrt-cu12-bindings", "11.0.0.114", "v11.0"),
    Release("11.1", "tensorrt-cu12-bindings", "11.1.0.106", "v11.1"),
    Release("11.4", "tensorrt-cu12-bindings", "11.4.0.106"),
    *(Release(version, "tensorrt-cu12-bindings", version, surface=False)
      for version in ("10.0.1", "10.1.0", "10.2.0", "10.4.0", "10.5.0", "10.6.0", "10.7.0", "10.8.0.43",
                      "10.9.0.34", "10.10.0.31", "10.11.0.33", "10.12.0.36", "10.14.1.48.post1", "10.15.1.29",
                      "10.16.1.11", "11.2.1.2", "11.3.0.99")),
)
WITH_FAKE_CORE = tuple(release for release in RELEASES if release.headers)
WITH_SURFACE = tuple(release for release in RELEASES if release.surface)
BY_KEY = {release.key: release for release in RELEASES}
assert len(BY_KEY) == len(RELEASES), "release keys must be unique"
# libraries the bindings link, per major release (readelf -d tensorrt.so: NEEDED)
LINKED = {8: ("nvinfer", "nvonnxparser", "nvinfer_plugin", "nvparsers"),
          10: ("nvinfer", "nvonnxparser", "nvinfer_plugin"),
          11: ("nvinfer", "nvonnxparser", "nvinfer_plugin")}


def cache_dir() -> Path:
    return Path(os.environ.get(WHEELS_ENV) or REPO / ".cache" / "trt-wheels")


def find_wheel(release: Release) -> Path | None:
    stem = release.distribution.replace("-", "_")
    found = sorted(cache_dir().glob(f"{stem}-{release.version}-*.whl"))
    return found[0] if found else None


def missing_reason(release: Release) -> str:
    return (f"{release.requirement} wheel not in {cache_dir()}: fetch it with `make trt-wheels` "
            f"(pip download --no-deps {release.requirement} -d {cache_dir()})")


def _atomic_dir(target: Path, fill) -> Path:
    """Make ``target`` by filling a temporary sibling and renaming it (parallel test processes race safely)."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        fill(tmp)
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def unpacked(release: Release) -> Path:
    """The wheel's contents (a directory to put on sys.path: it holds ``tensorrt_bindings/``)."""
    wheel = find_wheel(release)
    if wheel is None:
        raise FileNotFoundError(missing_reason(release))
    return _atomic_dir(cache_dir() / "unpacked" / wheel.stem, lambda tmp: zipfile.ZipFile(wheel).extractall(tmp))


def compiler_missing(name: str = "gcc") -> str | None:
    if shutil.which(name) is None:
        return f"no {name} here: the TensorRT shims are built with the system C compiler (apt-get install {name})"
    return None


def require_release(release: Release) -> None:
    """Skip the calling test, in one line naming the wheel and how to get it, where the wheel or gcc is missing."""
    import pytest

    if find_wheel(release) is None:
        pytest.skip(missing_reason(release))
    reason = compiler_missing("gcc") or compiler_missing("g++")
    if reason:
        pytest.skip(reason)


def link_only_shims(release: Release) -> Path:
    """A directory with lib<name>.so.<major> for every library the release's bindings link, exporting only
    the entry points (factories return NULL)."""
    def build(tmp: Path) -> None:
        for name in LINKED[release.major]:
            soname = f"lib{name}.so.{release.major}"
            subprocess.run(["gcc", "-shared", "-fPIC", "-O0", f"-DSHIM_LIB_VERSION={release.lib_version}",
                            "-Wl,-soname," + soname, "-o", str(tmp / soname), str(SHIMS / f"{name}.c")],
                           check=True, capture_output=True, text=True)

    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sorted(SHIMS.glob("*.c")))).hexdigest()[:12]
    return _atomic_dir(cache_dir() / "shims" / f"link-only-{release.version}-{digest}", build)


class FakeCoreBuildError(RuntimeError):
    """The fake core does not compile against its release's headers (the message names the header)."""


def fake_core(release: Release) -> Path:
    """A directory with the fake C++ core (libfakecore.so, compiled against the release's own headers) behind
    every SONAME the bindings link: lib<name>.so.<major> are empty libraries that need libfakecore.so, so the
    bindings' TensorRT symbols resolve to it; libnvparsers.so.8 stays link-only (Caffe/UFF are never used)."""
    if not release.headers:
        raise ValueError(f"{release.requirement} has no headers for a fake core")

    def build(tmp: Path) -> None:
        include = tmp / "include"
        include.mkdir()
        with tarfile.open(HEADERS / f"tensorrt-{release.headers}.tar.xz") as archive:
            archive.extractall(include, filter="data")
        subprocess.run([sys.executable, str(CORE / "gen_stubs.py"), str(include), str(tmp / "stubs.h")], check=True,
                       capture_output=True, text=True)
        compiled = subprocess.run(
            ["g++", "-std=c++17", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-Wno-deprecated-declarations",
             "-I", str(tmp), "-I", str(include), "-I", str(CORE / "cuda"), str(CORE / "fakecore.cpp"),
             "-Wl,-soname,libfakecore.so", "-o", str(tmp / "libfakecore.so")], capture_output=True, text=True)
        if compiled.returncode != 0:
            errors = [line for line in compiled.stderr.splitlines() if "error" in line] or [compiled.stderr[-500:]]
            raise FakeCoreBuildError(f"the fake TensorRT core does not compile against the {release.headers} headers "
                                     f"({include}): {errors[0]}")
        (tmp / "empty.c").write_text("/* a forwarder: its only content is DT_NEEDED libfakecore.so */\n")
        for name in LINKED[release.major]:
            soname = f"lib{name}.so.{release.major}"
            if name == "nvparsers":
                sources, links = [str(SHIMS / "nvparsers.c")], []
            else:
                sources, links = [str(tmp / "empty.c")], ["-Wl,--no-as-needed", "-L", str(tmp), "-l:libfakecore.so"]
            subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname," + soname, "-o", str(tmp / soname), *sources,
                            *links, "-Wl,-rpath,$ORIGIN"], check=True, capture_output=True, text=True)

    return _atomic_dir(cache_dir() / "shims" / f"fakecore-{release.version}-{_core_digest(release)}", build)


def _core_digest(release: Release) -> str:
    """The fake core's sources and headers, hashed: an edited fakecore.cpp builds anew, not from the cache."""
    digest = hashlib.sha256()
    for path in (*sorted(CORE.glob("*.cpp")), *sorted(CORE.glob("*.h")), CORE / "gen_stubs.py",
                 CORE / "cuda" / "cuda_runtime_api.h", HEADERS / f"tensorrt-{release.headers}.tar.xz"):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def environment(release: Release, libraries: Path) -> dict[str, str]:
    """The environment of a subprocess that imports the real module as ``tensorrt`` (see bootstrap.py)."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libraries), env.get("LD_LIBRARY_PATH")]))
    env["EDGEPIPE_REAL_TRT_SITE"] = str(unpacked(release))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")])
    return env


def run_with_real_bindings(release: Release, libraries: Path, script: Path, *args: str,
                           timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``script`` (which starts with ``import realtrt.bootstrap``) against the release's real module."""
    return subprocess.run([sys.executable, str(script), *args], env=environment(release, libraries),
                          capture_output=True, text=True, timeout=timeout)


def download(target: Path) -> int:
    """pip download --no-deps every pinned wheel into ``target``; one line per wheel that could not be fetched."""
    target.mkdir(parents=True, exist_ok=True)
    for release in RELEASES:
        if find_wheel(release) is not None:
            continue
        result = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(target),
                                 release.requirement], capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"trt-wheels: could not fetch {release.requirement} ({last}); its tests will skip", file=sys.stderr)
    return 0  # an offline machine skips those tests; it does not fail the install


if __name__ == "__main__":
    if sys.argv[1:] == ["download"]:
        sys.exit(download(cache_dir()))
    if sys.argv[1:] == ["list"]:
        print(json.dumps([release.requirement for release in RELEASES]))
        sys.exit(0)
    print("usage: python tests/realtrt/releases.py download|list", file=sys.stderr)
    sys.exit(2)
