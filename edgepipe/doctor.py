"""What this machine can run: platform, GPU, CUDA, TensorRT, onnxruntime, torch, CPU, power mode.

Every probe is best effort and never raises: a missing library or file is reported as such, so
`edgepipe doctor` is useful on a CPU-only laptop as much as on a Jetson. Device files are read
under `root` so tests can point it at a fake Jetson.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

NOT_INSTALLED = "not installed"
# L4T release -> JetPack (NVIDIA's JetPack archive: https://developer.nvidia.com/embedded/jetpack-archive)
L4T_TO_JETPACK = {
    "32.6.1": "4.6",
    "32.7.1": "4.6.1",
    "32.7.2": "4.6.2",
    "32.7.3": "4.6.3",
    "32.7.4": "4.6.4",
    "32.7.5": "4.6.5",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
}
# /proc/device-tree/model substring -> target profile; longest match first ("Orin Nano" before "Orin")
JETSON_MODELS = (
    ("AGX Orin", "jetson-agx-orin"),
    ("Orin NX", "jetson-orin-nx"),
    ("Orin Nano", "jetson-orin-nano"),
    ("Xavier NX", "jetson-xavier-nx"),
    ("Nano", "jetson-nano"),
)
DESKTOP_BY_CAPABILITY = {(8, 6): "desktop-ampere", (8, 9): "desktop-ada", (9, 0): "desktop-hopper"}
CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "neon",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def _run(command: list[str], timeout: float = 10.0) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version_of(module_name: str) -> tuple[Any | None, str]:
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a broken install (missing .so, ABI mismatch) reports, never crashes doctor
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == module_name  # not "a .so it needs is missing"
        return None, NOT_INSTALLED if missing else f"broken: {type(exc).__name__}: {str(exc).strip()[:200]}"
    return module, str(getattr(module, "__version__", "unknown version"))


def parse_nv_tegra_release(text: str) -> str | None:
    """'# R36 (release), REVISION: 4.3, ...' -> '36.4.3'."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return None
    parts = f"{match[1]}.{match[2]}".split(".")
    return ".".join((parts + ["0"])[:3])


def probe_platform(root: Path) -> dict[str, Any]:
    info: dict[str, Any] = {
        "system": platform.system(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "jetson_model": None,
        "l4t": None,
        "jetpack": None,
    }
    model = _read(root / "proc/device-tree/model")
    release = _read(root / "etc/nv_tegra_release")
    if model and "jetson" in model.lower():
        info["jetson_model"] = model
    if release:
        info["l4t"] = parse_nv_tegra_release(release)
        info["jetson_model"] = info["jetson_model"] or model or "Jetson (model file unreadable)"
    package = _run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"]) if release else None
    if package:
        info["jetpack"] = package.split("+")[0].split("-")[0]
    elif info["l4t"]:
        info["jetpack"] = L4T_TO_JETPACK.get(info["l4t"], f"unknown for L4T {info['l4t']}")
    return info


def probe_gpu(torch_module: Any | None, jetson_model: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {"name": None, "compute_capability": None, "memory_mib": None, "driver": None}
    smi = _run(
        [
            "nvidia-smi",
            "--query-gpu=name,compute_cap,memory.total,driver_version",
            "--format=csv,noheader,nounits",
        ]
    )
    if smi:
        name, capability, memory, driver = [field.strip() for field in smi.splitlines()[0].split(",")][:4]
        info.update(name=name, driver=driver)
        if re.fullmatch(r"\d+\.\d+", capability):
            info["compute_capability"] = capability
        if memory.isdigit():
            info["memory_mib"] = int(memory)
    if torch_module is not None and info["compute_capability"] is None:
        try:
            if torch_module.cuda.is_available():
                properties = torch_module.cuda.get_device_properties(0)
                info.update(
                    name=properties.name,
                    compute_capability=f"{properties.major}.{properties.minor}",
                    memory_mib=properties.total_memory // 2**20,
                )
        except Exception as exc:  # a CUDA init failure is a finding, not a crash
            info["error"] = f"torch.cuda: {type(exc).__name__}: {exc}"
    if info["name"] is None and jetson_model:
        info["name"] = f"integrated GPU of {jetson_model}"
    return info


def probe_cuda(root: Path, torch_module: Any | None) -> str | None:
    version_file = _read(root / "usr/local/cuda/version.json")
    if version_file:
        try:
            return f"{json.loads(version_file)['cuda']['version']} (/usr/local/cuda toolkit)"
        except (ValueError, KeyError, TypeError):
            pass
    nvcc = _run(["nvcc", "--version"])
    match = re.search(r"release ([\d.]+)", nvcc or "")
    if match:
        return f"{match[1]} (nvcc toolkit)"
    if torch_module is not None and getattr(torch_module.version, "cuda", None):
        return f"{torch_module.version.cuda} (torch's bundled runtime)"
    return None


def probe_tensorrt() -> dict[str, Any]:
    module, version = _version_of("tensorrt")
    # tensorrt-stubs (dev install) makes `import tensorrt` succeed as an empty namespace package
    if module is not None and not hasattr(module, "Builder"):
        return {"installed": False, "version": "not installed (only the tensorrt-stubs type stubs)"}
    return {"installed": module is not None, "version": version}


def probe_onnxruntime() -> dict[str, Any]:
    module, version = _version_of("onnxruntime")
    providers = module.get_available_providers() if module is not None else []
    return {"version": version, "providers": providers}


def probe_cpu(root: Path) -> dict[str, Any]:
    from edgepipe.cache import read_cpuinfo

    model, present = read_cpuinfo(root / "proc/cpuinfo")
    return {
        "model": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "flags": [flag for flag in CPU_FLAGS if flag in present],
    }


def probe_power_mode() -> str | None:
    output = _run(["nvpmodel", "-q"], timeout=5.0)
    match = re.search(r"NV Power Mode:\s*(\S+)", output or "")
    return match[1] if match else None


def probe_cudart() -> dict[str, Any]:
    """Whether the CUDA runtime library loads (the device runtime's ctypes path: no pycuda, no torch needed)."""
    from edgepipe.device.cuda import cudart
    from edgepipe.errors import EdgepipeError

    try:
        cuda = cudart()
    except EdgepipeError as exc:
        return {"loadable": False, "devices": 0, "why": str(exc)}
    return {"loadable": True, "devices": cuda.device_count(), "why": ""}


def guess_target(platform_info: dict[str, Any], gpu: dict[str, Any]) -> str | None:
    """The target profile this machine matches, if any."""
    model = platform_info.get("jetson_model") or ""
    for needle, target in JETSON_MODELS:
        if needle.lower() in model.lower():
            return target
    capability = gpu.get("compute_capability")
    if capability and not model:
        major, minor = (int(part) for part in capability.split("."))
        return DESKTOP_BY_CAPABILITY.get((major, minor))
    return None


def backends(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Which edgepipe backends will run here, and why not where they will not."""
    gpu_present = bool(report["gpu"]["compute_capability"] or report["platform"]["jetson_model"])
    trt = report["tensorrt"]["installed"]
    device_buffers = report["cudart"]["loadable"]
    providers = report["onnxruntime"]["providers"]
    torch_installed = report["torch"]["version"] != NOT_INSTALLED

    def entry(name: str, runs: bool, why_not: str) -> dict[str, Any]:
        return {"backend": name, "runs": runs, "why": "" if runs else why_not}

    trt_reason = (
        "TensorRT is not installed (JetPack ships it; on a desktop: pip install tensorrt from NVIDIA's index)"
        if not trt
        else "no NVIDIA GPU found"
        if not gpu_present
        else f"libcudart (the CUDA runtime, reached through ctypes for device buffers) is not loadable: "
        f"{report['cudart']['why']}"
    )
    return [
        entry("tensorrt", trt and gpu_present and bool(device_buffers), trt_reason),
        entry("onnxruntime-cpu", "CPUExecutionProvider" in providers, "onnxruntime is not installed"),
        entry(
            "onnxruntime-cuda", "CUDAExecutionProvider" in providers, "onnxruntime has no CUDA provider here"
        ),
        entry("torch-cpu", torch_installed, "torch is not installed (not needed on the device)"),
        entry("torch-cuda", bool(report["torch"]["cuda"]), "torch has no CUDA device here"),
    ]


def collect(root: Path | str = "/") -> dict[str, Any]:
    """The whole report as a JSON-ready dict."""
    root = Path(root)
    torch_module, torch_version = _version_of("torch")
    torch_cuda = False
    if torch_module is not None:
        try:
            torch_cuda = bool(torch_module.cuda.is_available())
        except Exception:  # broken CUDA driver: torch still runs on the CPU
            torch_cuda = False
    platform_info = probe_platform(root)
    gpu = probe_gpu(torch_module, platform_info["jetson_model"])
    _, onnx_version = _version_of("onnx")
    report: dict[str, Any] = {
        "platform": platform_info,
        "gpu": gpu,
        "cuda": probe_cuda(root, torch_module),
        "tensorrt": probe_tensorrt(),
        "cudart": probe_cudart(),
        "onnxruntime": probe_onnxruntime(),
        "onnx": onnx_version,
        "torch": {"version": torch_version, "cuda": torch_cuda},
        "cpu": probe_cpu(root),
        "power_mode": probe_power_mode(),
    }
    report["target"] = guess_target(platform_info, gpu)
    report["backends"] = backends(report)
    return report
