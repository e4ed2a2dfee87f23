"""Lazy TensorRT / CUDA discovery: which TensorRT is importable, which GPU is there, which Jetson release.

Nothing here imports tensorrt, pycuda or torch at module import time, so `edgepipe --help` and every CPU
path work on a machine without them. Tests replace the module `import_tensorrt` returns (see
tests/fakes/tensorrt_fake.py) through ``set_tensorrt_module``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edgepipe.errors import MissingDependency
from edgepipe.targets import parse_version

TENSORRT_INSTALL_HINT = (
    "install TensorRT from JetPack (Jetson) or "
    "`pip install tensorrt --extra-index-url https://pypi.nvidia.com` "
    "(desktop)"
)
NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")

# A module injected by tests (the recording fake); None means "import the real one".
_injected_tensorrt: ModuleType | None = None
_injected_pycuda: ModuleType | None = None
_PYCUDA_UNSET = object()


def set_tensorrt_module(module: ModuleType | None) -> None:
    """Serve ``module`` instead of ``import tensorrt`` (tests); None restores the real import."""
    global _injected_tensorrt
    _injected_tensorrt = module


def _is_real_tensorrt(module: ModuleType) -> bool:
    # The tensorrt-stubs package (dev install) creates site-packages/tensorrt/ holding only __init__.pyi,
    # so `import tensorrt` succeeds there as an empty namespace package. Real bindings have Builder and
    # __version__; a namespace package has neither.
    return hasattr(module, "Builder") and isinstance(getattr(module, "__version__", None), str)


def _load_tensorrt() -> tuple[ModuleType | None, str]:
    if _injected_tensorrt is not None:
        return _injected_tensorrt, ""
    try:
        module = importlib.import_module("tensorrt")
    except ImportError as exc:  # also OSError-free: a missing libnvinfer raises ImportError
        return None, f"the tensorrt Python package is not importable ({exc})"
    except OSError as exc:  # a wheel whose shared libraries are missing
        return None, f"the tensorrt package failed to load its libraries ({exc})"
    if not _is_real_tensorrt(module):
        return None, "only the tensorrt-stubs type stubs are installed here, not TensorRT itself"
    return module, ""


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


def import_pycuda_driver() -> Any | None:
    """pycuda.driver initialised on the primary context, or None when pycuda is not installed."""
    if _injected_pycuda is not None:
        return _injected_pycuda or None
    try:
        driver = importlib.import_module("pycuda.driver")
    except ImportError:
        return None
    return driver


def cuda_device(index: int = 0) -> CudaDevice | None:
    """The GPU this process would use, via pycuda or torch; None when there is no CUDA GPU."""
    driver = import_pycuda_driver()
    if driver is not None:
        try:
            driver.init()
            if driver.Device.count() <= index:
                return None
            device = driver.Device(index)
            major, minor = device.compute_capability()
            return CudaDevice(device.name(), (int(major), int(minor)), int(device.total_memory()) >> 20)
        except Exception:  # pycuda raises its own LogicError/RuntimeError when no driver is loaded
            return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available() or torch.cuda.device_count() <= index:
        return None
    props = torch.cuda.get_device_properties(index)
    return CudaDevice(props.name, (int(props.major), int(props.minor)), int(props.total_memory) >> 20)


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
