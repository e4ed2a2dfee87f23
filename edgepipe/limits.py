"""The one place that bounds what a file or a flag can make edgepipe allocate: batch sizes, declared array
shapes (.npz/.npy headers, read before loading), JSON file sizes.

A size someone declares is checked against a sane cap and against the memory available now *before* anything is
allocated; the refusal names the value, the limit and how to go past it deliberately. The array and JSON bounds
live in edgepipe/device/bounds.py (the device runtime has them too, and imports nothing of edgepipe): the
workstation reads a bundle's reference.npz through the device runtime's own reader (edgepipe.bundles), so both
sides check the same headers. This module adds the batch bound and turns the refusals into EdgepipeError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgepipe.device import bounds as _bounds
from edgepipe.errors import EdgepipeError

BATCH_LIMIT_ENV = "EDGEPIPE_MAX_BATCH"
BATCH_LIMIT = 4096  # samples per batch: above any batch edgepipe's own recipes, bench or eval use
ARRAY_LIMIT_ENV = _bounds.ARRAY_LIMIT_ENV
JSON_LIMIT_BYTES = _bounds.JSON_LIMIT_BYTES
human_bytes = _bounds.human_bytes


def batch_limit() -> int:
    text = os.environ.get(BATCH_LIMIT_ENV, "").strip()
    if not text:
        return BATCH_LIMIT
    try:
        return int(text)
    except ValueError:
        raise EdgepipeError(f"{BATCH_LIMIT_ENV}={text!r} is not a whole number of samples") from None


def batch_problem(size: int) -> str | None:
    """Why ``size`` is refused as a batch (its value, the limit, how to go past it), or None."""
    limit = batch_limit()
    if size > limit:
        return (f"{size} is above edgepipe's batch limit of {limit} samples; set {BATCH_LIMIT_ENV}={size} to go "
                "past it deliberately (memory permitting)")
    return None


def check_batch(size: int, where: str) -> int:
    """``size`` when it is at most the batch limit; else one line naming ``where`` (a flag)."""
    problem = batch_problem(size)
    if problem:
        raise EdgepipeError(f"{where} {problem}")
    return size


def check_allocation(nbytes: int, what: str, how_to_shrink: str) -> None:
    """Refuse allocating ``nbytes`` for ``what`` above the array cap or half the memory available now."""
    try:
        _bounds.check_allocation(int(nbytes), what, how_to_shrink)
    except _bounds.DeclaredTooLarge as exc:
        raise EdgepipeError(str(exc)) from None


def batch_bytes(batch: int, sample_shape: tuple[int, ...], itemsize: int = 4) -> int:
    count = int(batch)
    for side in sample_shape:
        count *= int(side)
    return count * itemsize


def read_json(path: Path, what: str = "file") -> Any:
    """json of a file at most JSON_LIMIT_BYTES; too big or nested too deeply is one line naming the file."""
    try:
        return _bounds.read_json_bounded(str(path), what)
    except _bounds.DeclaredTooLarge as exc:
        raise EdgepipeError(str(exc)) from None
