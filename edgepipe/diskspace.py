"""A full disk is one line: what was being written, where, how much room it had and (where it is known) needed.

edgepipe's own writes fail with ENOSPC; a library that writes a temporary and reads it back (onnxruntime's
quantizer saves a shape-inferred copy of the model with onnx's C++ writer, which does not report a short write)
fails later with a protobuf DecodeError instead. Both become :class:`DiskFull`. The writers' atomic directories
and files remove what they staged, so the previous artifact stays whole and no temporary is left.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from edgepipe.device.bounds import human_bytes
from edgepipe.errors import EdgepipeError

FULL = {errno.ENOSPC, errno.EDQUOT}


class DiskFull(EdgepipeError):
    """No room left where edgepipe (or a library it called) was writing."""


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path`` (its nearest existing
    parent); None where it cannot be asked."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                stats = os.statvfs(candidate)
            except OSError:
                return None
            return stats.f_bavail * stats.f_frsize
    return None


def out_of_space(exc: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT OSError behind ``exc`` (itself, or what it was raised from or during), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def mount_point(path: Path) -> Path:
    """The filesystem ``path`` is on, by its mount point (what a user frees space on; not a staging name)."""
    path = next((p for p in (Path(path), *Path(path).parents) if p.exists()), Path("/")).resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def disk_full(where: Path, what: str, needed: int | None = None) -> DiskFull:
    free = free_bytes(where)
    room = f"{human_bytes(free)} free" if free is not None else "full"
    need = f", which needs about {human_bytes(needed)}" if needed else ""
    return DiskFull(f"no space left on {mount_point(where)} ({room}) while writing {what}{need}; free some space or "
                    "write elsewhere (nothing half-written was kept)")


@contextlib.contextmanager
def writing(where: Path, what: str, needed: int | None = None,
            short_write_errors: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn a full disk met inside the block into one :class:`DiskFull` line.

    ``short_write_errors``: what a library raises when it reads back a file its own write cut short; taken as a
    full disk when the filesystem has less room than ``needed`` (the block's expected writes) once it failed.
    """
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        if looks_full(exc, where, needed, short_write_errors):
            full = out_of_space(exc)  # the disk the failed write named (another one than ``where``: /tmp, say)
            named = Path(os.fsdecode(full.filename)) if full is not None and isinstance(
                full.filename, (str, bytes, os.PathLike)) else None
            raise disk_full(named.parent if named is not None else Path(where), what, needed) from None
        raise


def looks_full(exc: BaseException, where: Path, needed: int | None = None,
               short_write_errors: tuple[type[BaseException], ...] = ()) -> bool:
    """``exc`` is a full disk: ENOSPC behind it, or a short-write error while ``where`` has less than ``needed``."""
    if out_of_space(exc) is not None:
        return True
    if short_write_errors and isinstance(exc, short_write_errors) and needed:
        free = free_bytes(Path(where))
        return free is not None and free < needed
    return False


def check_room(where: Path, what: str, needed: int) -> None:
    """Refuse before writing ``needed`` bytes under ``where`` when its filesystem has less room."""
    free = free_bytes(Path(where))
    if free is not None and free < needed:
        raise disk_full(Path(where), what, needed)
