"""Keep freed memory for reuse (glibc), so PyTorch eager is timed without page-fault churn.

PyTorch's CPU allocator is plain malloc. With glibc's defaults a batch-64 activation (a few MB) is above
the dynamic mmap threshold or gets trimmed back to the OS when freed, so every call page-faults it in
again: on this project's CI machine the mnist-resnet original at batch 64 took 19-31 ms that way and
15 ms with the settings below, varying with whatever else the process had allocated before. PyTorch's
CPU performance guide fixes this with jemalloc/tcmalloc; mallopt does the same for glibc without an
LD_PRELOAD. It only helps the baseline (onnxruntime has its own arena), so speedups stay conservative.
mallopt cannot be undone per call site: bench sets it for the rest of its process (the CLI and the
pipeline's bench child are processes of their own).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> str | None:
    """Apply the settings; returns what was set, or None where this is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt
        return None
    if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return None
    return f"glibc mallopt: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"
