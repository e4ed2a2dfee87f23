"""Engines are not portable: the engine manifest's facts, and the guard that refuses a mismatch.

A TensorRT plan file only loads on the TensorRT version that built it (unless built version-compatible)
and on GPUs of the same compute capability (unless built hardware-compatible). The guard compares the
engine manifest with this machine and names both, plus the exact `edgepipe build` command to rebuild.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from edgepipe.artifacts import Manifest
from edgepipe.errors import EdgepipeError
from edgepipe.targets import parse_version
from edgepipe.trt.loader import CudaDevice, cuda_device, jetson_release


@dataclass(frozen=True)
class MachineFacts:
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    l4t_release: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
            "l4t_release": self.l4t_release,
        }


def machine_facts(trt: ModuleType, device: CudaDevice | None = None) -> MachineFacts:
    device = device or cuda_device()
    if device is None:
        from edgepipe.errors import MissingDependency

        raise MissingDependency(f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible")
    return MachineFacts(trt.__version__, device.name, device.compute_capability, jetson_release())


def rebuild_command(engine_manifest: Manifest) -> str:
    build_config = engine_manifest.config
    source = build_config.get("source", "RUN_DIR")
    flags = build_config.get("cli_flags") or ["--precision", build_config.get("precision", "fp16")]
    return shlex.join(["edgepipe", "build", str(source), *flags, "--rebuild"])


def _sm(cc: Any) -> str:
    return f"sm_{cc[0]}{cc[1]}"


def check_engine_portable(engine_manifest: Manifest, machine: MachineFacts) -> None:
    """Refuse an engine built by another TensorRT or for another GPU architecture, in one line."""
    recorded = engine_manifest.config
    built = recorded.get("machine") or {}
    settings = recorded.get("settings") or {}
    built_version = str(built.get("tensorrt_version", "?"))
    built_cc = tuple(built.get("compute_capability") or (0, 0))
    problems = []
    same_version = parse_version(built_version) == parse_version(machine.tensorrt_version)
    if not same_version:
        here, there = parse_version(machine.tensorrt_version), parse_version(built_version)
        # VERSION_COMPATIBLE engines load on later TensorRT releases of the same major.
        forward_ok = settings.get("version_compatible") and here[:1] == there[:1] and here >= there
        if not forward_ok:
            problems.append(f"TensorRT {built_version} (this machine: {machine.tensorrt_version})")
    if built_cc != tuple(machine.compute_capability):
        level = settings.get("hardware_compat", "none")
        ampere_plus_ok = level == "ampere_plus" and built_cc[0] >= 8 and machine.compute_capability[0] >= 8
        if not ampere_plus_ok:
            problems.append(
                f"{built.get('gpu_name', '?')} {_sm(built_cc)} (this machine: {machine.gpu_name} "
                f"{_sm(machine.compute_capability)})"
            )
    if problems:
        raise EdgepipeError(
            f"engine was built for {' and '.join(problems)}; rebuild it here: "
            f"{rebuild_command(engine_manifest)}"
        )
