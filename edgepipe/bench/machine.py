"""The machine a benchmark ran on: CPU model and the flags that decide INT8 speed, threads, GPU/TensorRT."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

from edgepipe.doctor import probe_cpu, probe_gpu, probe_onnxruntime, probe_tensorrt


def int8_note(flags: list[str]) -> str:
    """What the CPU flags mean for onnxruntime's INT8 kernels (why INT8 may or may not beat FP32 here)."""
    if "amx_int8" in flags:
        return "AMX-INT8: fast INT8 matrix tiles"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "VNNI: INT8 dot products in one instruction"
    if "avx512f" in flags:
        return "AVX-512 without VNNI: INT8 gains are modest"
    if "avx2" in flags:
        return "AVX2 without VNNI: INT8 (u8s8) gains come from memory traffic, not faster math"
    if "asimddp" in flags or "i8mm" in flags:
        return "Arm dot-product instructions: INT8 kernels are fast"
    return "no SIMD INT8 instructions detected"


def _openvino_version() -> str | None:
    from edgepipe.runners.openvino import openvino_version

    return openvino_version()


def machine_info(threads: int, torch_module: Any | None = None) -> dict[str, Any]:
    """CPU model, cores, SIMD flags, threads used; GPU and TensorRT when present (from the doctor's probes)."""
    cpu = probe_cpu(Path("/"))
    if torch_module is None and "torch" in sys.modules:
        torch_module = sys.modules["torch"]
    gpu = probe_gpu(torch_module, None)
    tensorrt = probe_tensorrt()
    info = {
        "cpu": cpu["model"],
        "cores": cpu["cores"],
        "flags": cpu["flags"],
        "int8_note": int8_note(cpu["flags"]),
        "threads": threads,
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": platform.python_version(),
        "onnxruntime": probe_onnxruntime()["version"],
        "openvino": _openvino_version(),
        "torch": getattr(torch_module, "__version__", None),
        "gpu": gpu,
        "tensorrt": tensorrt["version"] if tensorrt["installed"] else None,
    }
    if hasattr(os, "getloadavg"):  # a busy shared machine explains noisy numbers
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        info["cpus_available"] = len(affinity(0))
    return info


def describe(machine: dict[str, Any]) -> str:
    """One line naming the machine, for table titles and README rows."""
    flags = ", ".join(machine["flags"]) or "no SIMD flags found"
    line = f"{machine['cpu']} ({machine['cores']} cores; {flags}), {machine['threads']} threads"
    if machine.get("load_average_1min") is not None:
        line += f", load {machine['load_average_1min']:.1f} at start"
    gpu = machine.get("gpu") or {}
    if gpu.get("name"):
        line += f"; GPU {gpu['name']}"
    if machine.get("tensorrt"):
        line += f"; TensorRT {machine['tensorrt']}"
    return line
