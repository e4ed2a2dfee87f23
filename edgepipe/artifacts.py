"""Artifact directories: manifest.json, content hashes, atomic writes.

Every stage writes into a temporary sibling directory and renames it into place only when the stage
has checked its result, so a crash or Ctrl-C never leaves a half artifact that a later stage trusts.
A run directory holds one sub-directory per stage (``train/``, ``export/``, ...), each with a manifest.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from edgepipe import __version__
from edgepipe.errors import EdgepipeError

MANIFEST = "manifest.json"
PIPELINE_ORDER = ("train", "prune", "export", "quantize", "build", "bundle")
_TRACKED_LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxscript", "torch-pruning", "numpy", "tensorrt")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Stable hash of a JSON-able value (configs, lists of parent hashes)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"edgepipe": __version__, "python": platform.python_version()}
    for name in _TRACKED_LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to a temp file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(value, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path, what: str = "file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise EdgepipeError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgepipeError(f"{what} {path} is not valid JSON ({exc}); delete it and rerun the stage") from None


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; on success replace ``final`` with it, on error delete it.

    The previous ``final`` (if any) is kept until the new one is complete, so a failed rerun leaves
    the last good artifact untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = None
    if final.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, retired / final.name)
    os.replace(staging, final)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def new_manifest(stage: str, config: dict[str, Any], parents: dict[str, str] | None = None) -> dict[str, Any]:
    """The common manifest header. ``parents`` maps a parent file's role to its sha256."""
    parents = parents or {}
    return {
        "stage": stage,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "parents": parents,
        # What the pipeline compares to decide a stage is already done.
        "inputs_key": sha256_json({"stage": stage, "config": config, "parents": parents}),
        "versions": library_versions(),
        "artifacts": [],
        "metrics": {},
    }


def add_artifact(
    manifest: dict[str, Any],
    directory: Path,
    filename: str,
    *,
    name: str,
    fmt: str,
    precision: str,
    **extra: Any,
) -> dict[str, Any]:
    """Record a file of ``directory`` as an evaluable artifact (eval/bench find artifacts this way)."""
    entry = {
        "name": name,
        "file": filename,
        "format": fmt,  # "torch" | "onnx" | "engine"
        "precision": precision,
        "sha256": sha256_file(Path(directory) / filename),
        "size_bytes": (Path(directory) / filename).stat().st_size,
        **extra,
    }
    manifest["artifacts"].append(entry)
    return entry


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    path = Path(directory) / MANIFEST
    write_json_atomic(path, manifest)
    return path


def read_manifest(directory: Path) -> dict[str, Any]:
    directory = Path(directory)
    manifest = read_json(directory / MANIFEST, what="manifest")
    if not isinstance(manifest, dict) or "stage" not in manifest:
        raise EdgepipeError(f"{directory / MANIFEST} is not an edgepipe manifest (no 'stage' key)")
    return manifest


def verify_artifacts(directory: Path, manifest: dict[str, Any]) -> bool:
    """True when every artifact file the manifest lists exists with the recorded hash."""
    for entry in manifest.get("artifacts", []):
        path = Path(directory) / entry["file"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            return False
    return True


def is_up_to_date(out: Path, manifest: dict[str, Any]) -> bool:
    """True when ``out`` already holds a complete artifact made from the same inputs (so a stage can skip)."""
    out = Path(out)
    if not (out / MANIFEST).is_file():
        return False
    try:
        existing = read_manifest(out)
    except EdgepipeError:
        return False  # a corrupt manifest means: make the stage again
    return existing.get("inputs_key") == manifest["inputs_key"] and verify_artifacts(out, existing)


def stage_dir(path: Path, stage: str) -> Path:
    """Accept either a run directory (containing ``stage/``) or the stage directory itself."""
    path = Path(path)
    if not path.exists():
        raise EdgepipeError(f"{path} does not exist")
    if (path / stage / MANIFEST).is_file():
        return path / stage
    if (path / MANIFEST).is_file() and read_manifest(path).get("stage") == stage:
        return path
    raise EdgepipeError(f"no '{stage}' stage found in {path} (expected {path / stage / MANIFEST})")


def run_stage_dirs(run_dir: Path) -> list[Path]:
    """Stage directories of a run, in the order they were created."""
    run_dir = Path(run_dir)
    found = [p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()]
    # Timestamps have one-second resolution: break ties by the pipeline's stage order, then by name.
    order = {stage: rank for rank, stage in enumerate(PIPELINE_ORDER)}

    def key(directory: Path) -> tuple[str, int, str]:
        manifest = read_manifest(directory)
        return manifest.get("created", ""), order.get(manifest.get("stage", ""), len(order)), directory.name

    return sorted(found, key=key)
