"""Lazy TensorRT / CUDA discovery: which TensorRT is importable, which GPU is there, which Jetson release.

The discovery itself is the device runtime's (edgepipe/device/runtime.py: ``import tensorrt`` on demand,
libcudart through ctypes), so the workstation and a bundle on a Jetson decide alike. Nothing here imports
tensorrt at module import time. Tests replace the tensorrt module and the CUDA library through the device
runtime's injection points (see tests/fakes/tensorrt_fake.py ``install``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from edgepipe.device import runtime as device
from edgepipe.errors import MissingDependency
from edgepipe.targets import parse_version

TENSORRT_INSTALL_HINT = device.TENSORRT_INSTALL_HINT
NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")


def set_tensorrt_module(module: ModuleType | None) -> None:
    """Serve ``module`` instead of ``import tensorrt`` (tests); None restores the real import."""
    device.set_tensorrt_module(module)


def _load_tensorrt() -> tuple[ModuleType | None, str]:
    return device.load_tensorrt()


def import_tensorrt() -> ModuleType:
    """The tensorrt module, or MissingDependency with one line saying why and how to get it."""
    module, reason = _load_tensorrt()
    if module is None:
        raise MissingDependency(f"TensorRT is not available: {reason}; {TENSORRT_INSTALL_HINT}")
    return module


def tensorrt_version(trt: ModuleType) -> tuple[int, ...]:
    """(10, 3, 0, 26) from trt.__version__ "10.3.0.26"."""
    return parse_version(trt.__version__)


@dataclass(frozen=True)
class CudaDevice:
    name: str
    compute_capability: tuple[int, int]
    total_memory_mib: int


def cuda_device(index: int = 0) -> CudaDevice | None:
    """The GPU this process would use, found through libcudart (ctypes; no pycuda, no torch); None without one."""
    try:
        found = device.cuda_device(index)
    except device.DeviceError:  # a driver that loads but fails its first call: no usable GPU
        return None
    if found is None:
        return None
    return CudaDevice(found["name"], tuple(found["compute_capability"]), int(found["total_memory_mib"]))


def jetson_release(path: Path | None = None) -> str | None:
    """The L4T release from /etc/nv_tegra_release ("R36 (release), REVISION: 4.0, ..." -> "R36.4.0")."""
    path = NV_TEGRA_RELEASE if path is None else path
    try:
        first = Path(path).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    # Format: "# R36 (release), REVISION: 4.0, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ..."
    text = first.lstrip("# ").strip()
    major = text.split(" ", 1)[0]
    revision = ""
    for part in text.split(","):
        key, _, value = part.partition(":")
        if key.strip().upper() == "REVISION":
            revision = value.strip()
    return f"{major}.{revision}" if major.startswith("R") and revision else (text or None)


def tensorrt_available() -> tuple[bool, str]:
    """(True, "TensorRT 10.3.0 on NVIDIA Orin (sm_87)") or (False, why not) — never raises."""
    module, reason = _load_tensorrt()
    if module is None:
        return False, reason
    device = cuda_device()
    if device is None:
        return False, f"TensorRT {module.__version__} is installed but no CUDA GPU is visible"
    major, minor = device.compute_capability
    return True, f"TensorRT {module.__version__} on {device.name} (sm_{major}{minor})"
