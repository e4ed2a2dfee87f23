"""Lazy TensorRT / CUDA discovery: which TensorRT is importable, which GPU is there, which Jetson release.

The discovery itself is the device runtime's (edgepipe/device/loader.py: ``import tensorrt`` on demand,
libcudart through ctypes), so the workstation and a bundle on a Jetson decide alike. Nothing here imports
tensorrt at module import time. Tests replace the tensorrt module and the CUDA library through the device
runtime's injection points (see tests/fakes/tensorrt_fake.py ``install``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgepipe.device import cuda
from edgepipe.device.errors import DeviceError

# The one loader: the device runtime's (tests serve a fake through its injection point).
from edgepipe.device.loader import import_tensorrt, load_tensorrt, tensorrt_version  # noqa: F401

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")


@dataclass(frozen=True)
class CudaDevice:
    name: str
    compute_capability: tuple[int, int]
    total_memory_mib: int


def cuda_device(index: int = 0) -> CudaDevice | None:
    """The GPU this process would use, found through libcudart (ctypes; no pycuda, no torch); None without one."""
    try:
        found = cuda.cuda_device(index)
    except DeviceError:  # a driver that loads but fails its first call: no usable GPU
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
    module, reason = load_tensorrt()
    if module is None:
        return False, reason
    device = cuda_device()
    if device is None:
        return False, f"TensorRT {module.__version__} is installed but no CUDA GPU is visible"
    major, minor = device.compute_capability
    return True, f"TensorRT {module.__version__} on {device.name} (sm_{major}{minor})"
