"""Which code edgepipe may import: only what the user names, never what a file it reads names.

A recipe passed on the command line is the user's word, so its ``package.module:callable`` is imported.
A run directory, manifest or bundle is data (it may come from someone else), so a callable named in
it is refused unless the user says ``--trust-code`` or the recipe being run names the same callable.

The trust lives in the environment on purpose: edgepipe's own child processes (bench, memory probes)
inherit it, and a user may set ``EDGEPIPE_TRUST_CODE=1`` in their own shell.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

from edgepipe.errors import EdgepipeError

TRUST_ALL_ENV = "EDGEPIPE_TRUST_CODE"
TRUSTED_CALLABLES_ENV = "EDGEPIPE_TRUSTED_CALLABLES"


# ``torchvision:resnet18``, ``timm:mobilenetv3_large_100``: a name looked up in a library's own registry of model
# builders. Building one imports nothing the file chose, so a manifest may name it without --trust-code.
MODEL_REGISTRIES = ("torchvision", "timm")


def is_import_path(name: str) -> bool:
    """``package.module:callable`` (code to import), as opposed to a zoo or registry model name."""
    return ":" in name and name.partition(":")[0] not in MODEL_REGISTRIES


def _trusted() -> tuple[bool, set[str]]:
    names = os.environ.get(TRUSTED_CALLABLES_ENV, "")
    return os.environ.get(TRUST_ALL_ENV) == "1", {name for name in names.split(",") if name}


@contextlib.contextmanager
def trusting(names: Iterable[str] = (), *, everything: bool = False) -> Iterator[None]:
    """Within the block (and in child processes started in it), these callables (or all code) may be imported."""
    saved = {key: os.environ.get(key) for key in (TRUST_ALL_ENV, TRUSTED_CALLABLES_ENV)}
    trust_all, trusted = _trusted()
    if everything:
        os.environ[TRUST_ALL_ENV] = "1"
    trusted |= {name for name in names if is_import_path(name)}
    if trusted:
        os.environ[TRUSTED_CALLABLES_ENV] = ",".join(sorted(trusted))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def require_trusted(name: str, where: str) -> None:
    """Refuse to import ``name`` (read from ``where``, a file) unless the user trusted it."""
    trust_all, trusted = _trusted()
    if trust_all or name in trusted:
        return
    raise EdgepipeError(f"{where} names code to import ('{name}'); edgepipe never runs code named by a file it "
                        "reads. If you trust where it came from, rerun as `edgepipe --trust-code COMMAND ...`")
