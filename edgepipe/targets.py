"""Device profiles (`--target`): what each Jetson or desktop GPU class can run, with a source per fact.

The facts live in targets.yaml beside this module so they can be reviewed (and cited) without reading code.
A request the target cannot satisfy is refused here, before any work starts; `--precision best` is
resolved to the best precision the target supports, with the reason said in one line.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import yaml

from edgepipe.device.common import version_tuple
from edgepipe.device.layout import PRECISIONS  # best first: INT8 tensor cores beat FP16 beat FP32 where present
from edgepipe.errors import EdgepipeError

# What a target's tensor cores run (targets.yaml `precisions`) beyond what edgepipe builds: FP8 from compute
# capability 8.9 (Ada, Hopper, Blackwell), FP4 on Blackwell (Thor, RTX 50):
# https://nvidia.github.io/TransformerEngine/support_matrix.html
LOW_PRECISIONS = ("fp8", "fp4")
HARDWARE_PRECISIONS = PRECISIONS + LOW_PRECISIONS
_COMMON_KEYS = {"kind", "gpu", "compute_capability", "precisions", "dla_cores", "sparse_tensor_cores", "memory_mib",
                "jetpack", "sources"}
_REQUIRED_KEYS = {"jetson": _COMMON_KEYS | {"releases"}, "desktop": _COMMON_KEYS | {"tensorrt_min", "tensorrt_max"}}


@dataclass(frozen=True)
class Release:
    """One JetPack release a Jetson module runs, and the stack it pins (None: not checked yet)."""

    jetpack: str
    tensorrt: str  # full version, e.g. "8.5.2": what a calibration cache header names
    l4t: str | None = None
    cuda: str | None = None
    python: str | None = None  # the system Python TensorRT's bindings exist for


@dataclass(frozen=True)
class TargetProfile:
    """What one deployment target supports. Versions are "major.minor" strings (e.g. "10.3")."""

    name: str
    kind: Literal["jetson", "desktop"]
    gpu: str
    compute_capability: tuple[int, int]
    precisions: frozenset[str]
    dla_cores: int
    sparse_tensor_cores: bool
    memory_mib: int
    tensorrt_min: str
    tensorrt_max: str
    jetpack: str | None  # a Jetson's release that bundles are made and checked for
    sources: list[str] = field(default_factory=list, compare=False, hash=False)
    releases: tuple[Release, ...] = ()  # Jetsons: every JetPack the module runs

    @property
    def sm(self) -> str:
        """The compute capability as CUDA spells architectures: sm_87."""
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"

    @property
    def tensorrt_range(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """tensorrt_min and tensorrt_max as comparable tuples."""
        return parse_version(self.tensorrt_min), parse_version(self.tensorrt_max)

    def supports_tensorrt(self, version: str) -> bool:
        """Whether a TensorRT version (any number of components, "10.3.0.26") runs on this target: a Jetson's
        JetPack releases each pin one TensorRT (a device on any of them is never refused); desktops a range."""
        major_minor = parse_version(version)[:2]
        if self.releases:
            return any(parse_version(release.tensorrt)[:2] == major_minor for release in self.releases)
        low, high = self.tensorrt_range
        return low[:2] <= major_minor <= high[:2]

    def release_for(self, version: str) -> Release | None:
        """The newest JetPack release that ships this TensorRT (major.minor), None on desktops or when none does."""
        major_minor = parse_version(version)[:2]
        found = [r for r in self.releases if parse_version(r.tensorrt)[:2] == major_minor]
        return found[-1] if found else None

    @property
    def default_release(self) -> Release | None:
        """The Jetson release named by ``jetpack``: what bundles are preflighted for and caches are headed for."""
        return next((r for r in self.releases if r.jetpack == self.jetpack), None)

    def tensorrt_text(self) -> str:
        """"8.0/8.2" for a Jetson's releases, "8.6–10.13" for a desktop range."""
        if self.releases:
            return "/".join(dict.fromkeys(".".join(map(str, parse_version(r.tensorrt)[:2])) for r in self.releases))
        low, high = self.tensorrt_min, self.tensorrt_max
        return low if low == high else f"{low}–{high}"

    @property
    def checked_tensorrt(self) -> str:
        """The release preflight checks against by default: a Jetson's bundle release, a desktop's oldest."""
        return self.default_release.tensorrt if self.default_release else self.tensorrt_min


def parse_version(version: str) -> tuple[int, ...]:
    """ "10.3.0.26" -> (10, 3, 0, 26); stops at the first non-numeric part ("8.6.2-1+cuda12" -> (8, 6, 2)): the
    device runtime's one rule."""
    return version_tuple(version)


def _profile_from_entry(name: str, entry: dict) -> TargetProfile:
    # The data file ships with the package, so a malformed entry is a bug (ValueError), not user input.
    required = _REQUIRED_KEYS.get(entry.get("kind"), _COMMON_KEYS)
    missing = required - set(entry)
    unknown = set(entry) - required
    if missing or unknown:
        raise ValueError(f"targets.yaml entry {name!r}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    releases = tuple(Release(**{key: None if value is None else str(value) for key, value in release.items()})
                     for release in entry.get("releases") or ())
    versions = sorted(parse_version(r.tensorrt) for r in releases)
    if releases and entry["jetpack"] not in {r.jetpack for r in releases}:
        raise ValueError(f"targets.yaml entry {name!r}: jetpack {entry['jetpack']!r} is not one of its releases")
    tensorrt_min = ".".join(map(str, versions[0][:2])) if releases else str(entry["tensorrt_min"])
    tensorrt_max = ".".join(map(str, versions[-1][:2])) if releases else str(entry["tensorrt_max"])
    precisions = frozenset(entry["precisions"])
    if not precisions <= set(HARDWARE_PRECISIONS) or "fp32" not in precisions:
        raise ValueError(f"targets.yaml entry {name!r}: precisions {sorted(precisions)} outside "
                         f"{HARDWARE_PRECISIONS}")
    if entry["kind"] not in ("jetson", "desktop"):
        raise ValueError(f"targets.yaml entry {name!r}: kind {entry['kind']!r}")
    major, minor = entry["compute_capability"]
    return TargetProfile(
        name=name,
        kind=entry["kind"],
        gpu=str(entry["gpu"]),
        compute_capability=(int(major), int(minor)),
        precisions=precisions,
        dla_cores=int(entry["dla_cores"]),
        sparse_tensor_cores=bool(entry["sparse_tensor_cores"]),
        memory_mib=int(entry["memory_mib"]),
        tensorrt_min=tensorrt_min,
        tensorrt_max=tensorrt_max,
        jetpack=None if entry["jetpack"] is None else str(entry["jetpack"]),
        sources=[str(source) for source in entry["sources"]],
        releases=releases,
    )


@functools.cache
def _load_profiles() -> dict[str, TargetProfile]:
    text = resources.files("edgepipe").joinpath("targets.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return {name: _profile_from_entry(name, entry) for name, entry in data.items()}


def list_targets() -> list[TargetProfile]:
    """Every known profile, in the order of targets.yaml (Jetsons, oldest first, then desktops)."""
    return list(_load_profiles().values())


def get_target(name: str) -> TargetProfile:
    """The profile called `name`; an unknown name is a user error listing the known ones."""
    profiles = _load_profiles()
    if name not in profiles:
        raise EdgepipeError(f"unknown target {name!r}; known targets: {', '.join(profiles)}")
    return profiles[name]


def resolve_precision(target: TargetProfile, requested: str) -> tuple[str, str]:
    """("fp16", reason) for a requested precision on `target`.

    "best" becomes the fastest precision the target supports, and the reason says why; an explicit
    precision the target cannot run is refused with what it does support.
    """
    wanted = requested.strip().lower()
    supported = [precision for precision in PRECISIONS if precision in target.precisions]
    if wanted == "best":
        best = supported[0]
        skipped = [precision for precision in PRECISIONS[: PRECISIONS.index(best)]]
        reason = f"--precision best resolved to {best} for {target.name} ({target.sm})"
        if skipped:
            reason += f"; it has no {'/'.join(skipped)} support"
        return best, reason
    if wanted in LOW_PRECISIONS:
        if wanted not in target.precisions:
            raise EdgepipeError(
                f"{target.name} ({target.sm}) cannot run {wanted}: its tensor cores have no {wanted.upper()}; "
                f"it supports {', '.join(supported)} (use --precision best to pick {supported[0]})"
            )
        raise EdgepipeError(
            f"{target.name} runs {wanted}, but edgepipe builds {', '.join(PRECISIONS)} only (an {wanted} engine "
            f"needs an {wanted.upper()}-quantized ONNX, which edgepipe quantize does not make); use --precision int8"
        )
    if wanted not in PRECISIONS:
        raise EdgepipeError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)} or best")
    if wanted not in target.precisions:
        raise EdgepipeError(
            f"{target.name} ({target.sm}) cannot run {wanted}; it supports {', '.join(supported)} "
            f"(use --precision best to pick {supported[0]})"
        )
    return wanted, f"{wanted} as requested; {target.name} supports it"


def require_dla(target: TargetProfile, dla_core: int) -> None:
    """Refuse a DLA core index the target does not have (Orin Nano and desktops have none)."""
    if target.dla_cores == 0:
        raise EdgepipeError(f"{target.name} has no DLA cores; drop --dla/--dla-core or pick a DLA target")
    if not 0 <= dla_core < target.dla_cores:
        raise EdgepipeError(
            f"{target.name} has {target.dla_cores} DLA core(s), numbered 0..{target.dla_cores - 1}; "
            f"got --dla-core {dla_core}"
        )
