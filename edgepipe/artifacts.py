"""Artifact directories: manifest.json, content hashes, atomic file writes, paths kept inside their stage.

A run directory holds one sub-directory per stage (``train/``, ``export/``, ...), each with a manifest.
How a whole stage directory is written into a run (atomically, locked, never over a user's files) is
:mod:`edgepipe.rundir`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_readable(path: Path) -> None:
    """Ordinary permissions (what umask gives a new file or directory), not mkstemp/mkdtemp's owner-only 0600/0700.

    A bundle copied to a Jetson must be readable by the service account that runs it.
    """
    path = Path(path)
    mode = 0o777 if path.is_dir() else 0o666
    os.chmod(path, mode & ~_umask())


def write_bytes_atomic(path: Path, data: Any) -> None:
    """Write bytes to a temp file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The .tmp- name is what recover() removes after a kill.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(memoryview(data))
        make_readable(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to a temp file in the same directory, then rename: readers never see half a file.

    Keys are sorted, so the same content always gives the same bytes (and the same hashes in a bundle).
    """
    write_bytes_atomic(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path, what: str = "file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise EdgepipeError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgepipeError(f"{what} {path} is not valid JSON ({exc}); delete it and rerun the stage") from None
    except RecursionError:
        raise EdgepipeError(f"{what} {path} nests too deeply to be an edgepipe file") from None


def artifact_path(directory: Path, relative: Any, where: str | None = None) -> Path:
    """``directory / relative``, refused unless it stays inside ``directory`` once symlinks are resolved.

    A manifest is data from whoever made the run: '../../secret', an absolute path or a symlink out of the
    run must never be read, evaluated or shipped in a bundle.
    """
    directory = Path(directory)
    where = where or str(directory / MANIFEST)
    if not isinstance(relative, str) or not relative or "\0" in relative or Path(relative).is_absolute():
        raise EdgepipeError(f"{where}: artifact file {relative!r} is not a path inside {directory}; refusing it")
    root = directory.resolve()
    candidate = directory / relative
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise EdgepipeError(f"{where}: artifact file '{relative}' points outside {directory} (to {resolved}); "
                            "refusing to read it")
    return candidate


# What every artifact entry must carry, and its type (a hand-edited manifest gets one line, not a KeyError).
_ARTIFACT_FIELDS = {"name": str, "file": str, "format": str, "sha256": str}


def _check_manifest(path: Path, manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("stage"), str):
        raise EdgepipeError(f"{path} is not an edgepipe manifest (no 'stage' key)")
    for key, kind in (("artifacts", list), ("parents", dict), ("metrics", dict), ("config", dict)):
        value = manifest.setdefault(key, kind())
        if not isinstance(value, kind):
            raise EdgepipeError(f"{path}: '{key}' must be a {kind.__name__}, got {type(value).__name__}")
    for index, entry in enumerate(manifest["artifacts"]):
        if not isinstance(entry, dict):
            raise EdgepipeError(f"{path}: artifacts[{index}] is not an object")
        for field, kind in _ARTIFACT_FIELDS.items():
            if not isinstance(entry.get(field), kind):
                raise EdgepipeError(f"{path}: artifacts[{index}] has no '{field}' {kind.__name__}; "
                                    "the manifest was edited or damaged, rerun the stage")
        artifact_path(path.parent, entry["file"], f"{path}: artifacts[{index}]")
    for index, entry in enumerate(manifest.get("files") or []):  # a bundle's file list
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise EdgepipeError(f"{path}: files[{index}] has no sha256; copy the bundle again")
        artifact_path(path.parent, entry.get("path"), f"{path}: files[{index}]")
    return manifest


def is_stage_dir(path: Path, stage: str) -> bool:
    """True when ``path`` is a directory holding a manifest.json of ``stage`` (a directory edgepipe made)."""
    manifest = Path(path) / MANIFEST
    if not Path(path).is_dir() or not manifest.is_file():
        return False
    try:
        value = json.loads(manifest.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(value, dict) and value.get("stage") == stage


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
    return _check_manifest(directory / MANIFEST, read_json(directory / MANIFEST, what="manifest"))


def verify_artifacts(directory: Path, manifest: dict[str, Any]) -> bool:
    """True when every artifact file the manifest lists exists with the recorded hash."""
    for entry in manifest.get("artifacts", []):
        path = artifact_path(directory, entry["file"])
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
