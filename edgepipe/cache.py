"""Machine-local memory of measured decisions (the role TensorRT's timing cache plays for its tactics).

Timing decides a few things (which CPU-track layers stay in float, the steadiness gate's fast probe). On a
shared machine a rerun can measure differently and so make a different artifact; with the decision kept,
keyed by everything it depends on (the model's bytes, the candidates, the CPU model and its SIMD flags,
the thread count, the runtime's version), a rerun on the same machine reuses it and the artifacts come out
byte-identical. Measuring again is asked for explicitly (``--retime``). The directory is
``$EDGEPIPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgepipe``, else ``~/.cache/edgepipe``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

# SIMD flags that change which kernels a CPU runtime picks (and so what is faster).
_KERNEL_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16",
                 "asimd", "asimddp", "i8mm", "sve")


def cache_dir() -> Path:
    if os.environ.get("EDGEPIPE_CACHE_DIR"):
        return Path(os.environ["EDGEPIPE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgepipe"


# Where /proc/cpuinfo names the CPU: x86 "model name"; Arm kernels "Model", "Hardware" or only "CPU part".
_MODEL_KEYS = ("model name", "Model", "Hardware", "CPU part")


def read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str | None, set[str]]:
    """(model, flags) from /proc/cpuinfo: x86 lists its SIMD flags as "flags", Arm as "Features"; (None, empty)
    where the file is unreadable. The one reader (the cache keys, doctor, quantize's VNNI record)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None, set()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip(), value.strip())  # the first processor's
    model = next((fields[key] for key in _MODEL_KEYS if fields.get(key)), None)
    return model, set((fields.get("flags") or fields.get("Features") or "").split())


def cpu_model() -> str:
    return read_cpuinfo()[0] or platform.processor() or platform.machine()


def cpu_fingerprint() -> str:
    """ "AMD EPYC 9R14 | avx avx2 avx512_vnni ..." : the model and the kernel-relevant flags."""
    flags = read_cpuinfo()[1]
    return f"{cpu_model()} | {' '.join(f for f in _KERNEL_FLAGS if f in flags)}"


class DecisionCache:
    """One JSON file of {key: decision}; a key is the sha256 of everything the decision depends on."""

    def __init__(self, name: str, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / f"{name}.json"

    @staticmethod
    def key(**inputs: Any) -> str:
        return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()

    def _entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: measure (a cache is only ever a shortcut)
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        found = self._entries().get(key)
        return found if isinstance(found, dict) else None

    def put(self, key: str, decision: dict[str, Any]) -> None:
        """Write through a temporary file and a rename: a concurrent reader never sees half a file."""
        entries = self._entries()
        entries[key] = decision
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
