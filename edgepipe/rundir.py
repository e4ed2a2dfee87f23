"""Writing a run directory safely: a stage directory appears whole or not at all, never over what edgepipe
did not make, one writer at a time, and what a killed writer left behind is repaired by the next one.

Every stage writes into a temporary sibling directory and swaps it into place only when the stage has
checked its result, so a crash, Ctrl-C or ``kill -9`` never leaves a half artifact that a later stage trusts.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgepipe import diskspace
from edgepipe.artifacts import MANIFEST, is_stage_dir, make_readable
from edgepipe.errors import EdgepipeError
from edgepipe.run import RECIPE_COPY


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
_held_locks: set[Path] = set()  # resolved run directories this process holds the lock of
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
        yield  # already ours (this process or the one that started it)
        return
    fd = os.open(key / LOCK, os.O_RDWR | os.O_CREAT, 0o666)  # the kernel applies the umask
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
        _held_locks.add(key)
        os.environ[_LOCKED_BY_PARENT_ENV] = os.pathsep.join(filter(None, [saved_env, str(key)]))
        try:
            recover(key)
            yield
        finally:
            _held_locks.discard(key)
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
    with diskspace.writing(final.parent, f"{final.name}'s temporary files"), \
            tempfile.TemporaryDirectory(prefix=f".{final.name}.tmp-scratch-", dir=final.parent) as path:
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
    # a full disk met anywhere in the stage (its own writes or a library's) is one line; the staging goes
    with run_lock(final.parent), diskspace.writing(final.parent, f"{final.name}/ ({stage})"):
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
