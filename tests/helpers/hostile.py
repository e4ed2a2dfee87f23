"""Hostile files for the bounds cases: arrays that declare more than they hold, a dead model, a filled disk."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

HUGE = 10**12  # samples a tampered reference.npz declares (the case: 2.79 PiB)


def npy_declaring(shape: tuple[int, ...], dtype=np.float32) -> bytes:
    """An .npy whose header declares ``shape`` and whose data is 64 bytes: np.load would allocate the shape."""
    from numpy.lib import format as npy_format

    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": npy_format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue() + b"\0" * 64


def rehash_bundle_file(bundle: Path, relative: str) -> None:
    """Update the bundle manifest's sha256 and size of ``relative``: the tampering an attacker who knows the
    format does (the hash check alone then passes)."""
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    data = (bundle / relative).read_bytes()
    for entry in manifest["files"]:
        if entry["path"] == relative:
            entry["sha256"], entry["size_bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    manifest_path.write_text(json.dumps(manifest))


def huge_reference(bundle: Path, samples: int = HUGE) -> None:
    """Replace the bundle's reference.npz by one whose members declare ``samples`` samples, hash updated."""
    x_shape = (samples, 1, 8, 8)
    with zipfile.ZipFile(bundle / "reference.npz", "w") as archive:
        archive.writestr("x.npy", npy_declaring(x_shape))
        archive.writestr("y.npy", npy_declaring((samples,), np.int64))
        archive.writestr("outputs.npy", npy_declaring((samples, 10)))
    rehash_bundle_file(bundle, "reference.npz")


def deep_json_bundle_manifest(bundle: Path, depth: int = 100_000) -> None:
    """The bundle's manifest.json with a value nested ``depth`` lists deep (json's parser recurses)."""
    path = bundle / "manifest.json"
    text = path.read_text().rstrip()
    path.write_text(text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}")


def kill_the_model(run: Path) -> None:
    """Zero the classifier of ``run``'s trained model (outputs all zeros for every input), manifest hash updated."""
    import torch

    path = run / "train" / "model.pt"
    state = torch.load(path, weights_only=True)
    for name, tensor in state["model"].items():
        if name.startswith("classifier."):
            tensor.zero_()
    torch.save(state, path)
    manifest = json.loads((run / "train" / "manifest.json").read_text())
    data = path.read_bytes()
    for entry in manifest["artifacts"]:
        if entry["file"] == "model.pt":
            entry["sha256"], entry["size_bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (run / "train" / "manifest.json").write_text(json.dumps(manifest))


# Linux carries a process's peak RSS across fork and exec (signal->maxrss), so a child forked from pytest's
# ~1 GiB process would report pytest's peak. A small launcher forks the command instead and reports its
# RUSAGE_CHILDREN peak (the command alone) and wall time; it kills the command after the timeout.
_LAUNCHER = """
import json, resource, subprocess, sys, time
started = time.monotonic()
try:
    code = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, timeout=float(sys.argv[1])).returncode
except subprocess.TimeoutExpired:
    code = -9
print(json.dumps([code, time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))
"""


def child_usage(args: list[str], timeout: float = 60, **popen) -> tuple[int, str, float, int]:
    """Run ``args``; (exit code, stderr, wall seconds, peak RSS in bytes) of that command alone."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(timeout), *args], capture_output=True, text=True,
                          timeout=timeout + 30, **popen)
    code, seconds, peak_kib = json.loads(done.stdout.strip().splitlines()[-1])
    return code, done.stderr, seconds, peak_kib * 1024  # Linux: ru_maxrss in KiB


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only); skips the test, with the reason, where the machine
    does not allow mounting."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a small tmpfs, and mounting one needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(filesystem: Path, leave: int) -> None:
    """Fill ``filesystem`` so that ``leave`` bytes stay free."""
    stats = os.statvfs(filesystem)
    free = stats.f_bavail * stats.f_frsize
    with open(filesystem / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
