"""Artifact directories: manifest.json, content hashes, atomic writes.

Every stage writes into a temporary sibling directory and renames it into place only when the stage
has checked its result, so a crash or Ctrl-C never leaves a half artifact that a later stage trusts.
A run directory holds one sub-directory per stage (``train/``, ``export/``, ...), each with a manifest.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
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


RECIPE_COPY = "recipe.yaml"  # the recipe a pipeline run was made from, beside its stage directories


def is_run_dir(path: Path) -> bool:
    """A run directory edgepipe made: it holds the pipeline's recipe copy or a stage directory with a manifest."""
    path = Path(path)
    if not path.is_dir():
        return False
    return (path / RECIPE_COPY).is_file() or (path / LOCK).is_file() or any(
        (child / MANIFEST).is_file() for child in path.iterdir() if child.is_dir())


def check_run_out(out: Path) -> None:
    """``--out`` of a pipeline: a new or empty directory, or a run directory of ours (never someone's folder)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgepipeError(f"--out {out} is a file, not a directory; pick a new directory")
    if out.is_dir() and any(out.iterdir()) and not is_run_dir(out):
        raise EdgepipeError(f"--out {out} exists and is not an edgepipe run directory; pick a new directory "
                            "(nothing was written)")


def check_replaceable(final: Path, stage: str) -> None:
    """Refuse to replace anything edgepipe did not make: only a missing path, an empty directory or a ``stage``
    directory of ours may become the new ``stage`` artifact."""
    final = Path(final)
    if final.is_symlink():
        raise EdgepipeError(f"--out {final} is a symbolic link; pick a new directory")
    if not final.exists():
        return
    if not final.is_dir():
        raise EdgepipeError(f"--out {final} is a file, not a directory; pick a new directory")
    if is_stage_dir(final, stage) or not any(final.iterdir()):
        return
    raise EdgepipeError(f"--out {final} exists and is not an edgepipe '{stage}' directory; it would be replaced, so "
                        "nothing was written: pick a new directory (or delete it yourself)")


LOCK = ".edgepipe.lock"
_held_locks: dict[Path, list[int]] = {}  # resolved directory -> [fd, depth]: re-entrant within one process
# Runs locked by this process, for its child processes (the pipeline's bench child writes report.json).
_LOCKED_BY_PARENT_ENV = "EDGEPIPE_LOCKED_RUNS"


@contextlib.contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """One writer per run directory at a time: a second process is refused in one line, not raced.

    Re-entrant within a process (the pipeline holds it while its stages take it again) and for the
    child processes it starts. Taking it also restores or removes what a killed writer left behind
    (see :func:`recover`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = directory.resolve()
    if key in _held_locks or str(key) in os.environ.get(_LOCKED_BY_PARENT_ENV, "").split(os.pathsep):
        depth = _held_locks.setdefault(key, [-1, 0])
        depth[1] += 1
        try:
            yield
        finally:
            depth[1] -= 1
            if depth == [-1, 0]:
                del _held_locks[key]
        return
    fd = os.open(key / LOCK, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    saved_env = os.environ.get(_LOCKED_BY_PARENT_ENV)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 80).decode(errors="replace").strip() or "another process"
            raise EdgepipeError(f"{directory} is being written by another edgepipe process ({holder}); wait for it "
                                "to finish or pick another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}\n".encode())
        _held_locks[key] = [fd, 1]
        os.environ[_LOCKED_BY_PARENT_ENV] = os.pathsep.join(filter(None, [saved_env, str(key)]))
        try:
            recover(key)
            yield
        finally:
            del _held_locks[key]
            if saved_env is None:
                os.environ.pop(_LOCKED_BY_PARENT_ENV, None)
            else:
                os.environ[_LOCKED_BY_PARENT_ENV] = saved_env
    finally:
        os.close(fd)  # closing the descriptor releases the lock, also when the process is killed


def recover(directory: Path) -> None:
    """Undo what a killed writer left in ``directory``: a stranded previous artifact (``.NAME.old-*``, when the
    kill came between two renames) goes back in place; half-written ``.NAME.tmp-*`` directories are removed.

    Only called under :func:`run_lock`, so no other writer is using them.
    """
    for leftover in sorted(Path(directory).glob(".*.old-*")):
        final = leftover.parent / leftover.name[1:].rsplit(".old-", 1)[0]
        if not final.exists() and (leftover / MANIFEST).is_file():
            os.replace(leftover, final)
        else:
            _remove(leftover)
    for leftover in Path(directory).glob(".*.tmp-*"):
        _remove(leftover)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def scratch_dir(final: Path) -> Iterator[Path]:
    """A work directory beside ``final`` that a later run removes if this process is killed (not /tmp)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{final.name}.tmp-scratch-", dir=final.parent) as path:
        yield Path(path)


@contextlib.contextmanager
def atomic_dir(final: Path, stage: str) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; on success replace ``final`` with it, on error delete it.

    ``final`` must be missing, empty or a ``stage`` directory of ours (anything else is refused before
    anything is written). The previous ``final`` stays complete until the new one is: the swap is one
    atomic exchange where the system has it, else two renames that :func:`recover` completes after a
    kill. The run directory is locked for the whole write.
    """
    final = Path(final)
    check_replaceable(final, stage)
    with run_lock(final.parent):
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            yield staging
            check_replaceable(final, stage)  # the stage may run for minutes: check again before replacing
            make_readable(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if final.exists() and _exchange(staging, final):
            shutil.rmtree(staging, ignore_errors=True)  # now holds the previous artifact
            return
        retired = None
        if final.exists():
            retired = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, retired)
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
