"""The one frame every stage that writes a directory runs in, so that a stage body is only its work.

    frame = StageFrame(PRUNE, out)                   # refuses a directory edgepipe did not make, before any work
    if frame.up_to_date(manifest, reuse=reuse):      # same inputs, every artifact intact: says so, nothing runs
        return out
    ...                                              # the stage's work
    with frame.writing(manifest, check=reloads) as tmp:
        ...                                          # files into tmp, add_artifact(manifest, tmp, ...)
    # here: the manifest was written last, read back, its artifacts re-hashed, the stage's own reload check passed,
    # all under the run's lock, and only then was tmp swapped into place (edgepipe.rundir.atomic_dir)

Before it, train, prune, quantize and build each repeated that sequence by hand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from edgepipe.artifacts import Manifest, is_up_to_date, read_manifest, verify_artifacts, write_manifest
from edgepipe.progress import say
from edgepipe.rundir import atomic_dir, check_replaceable


class StageFrame:
    """One stage directory ``out`` of stage ``stage``, written whole or not at all."""

    def __init__(self, stage: str, out: Path) -> None:
        self.stage, self.out = stage, Path(out)
        check_replaceable(self.out, stage)

    def up_to_date(self, manifest: Manifest, *, reuse: bool, quiet: bool = False) -> bool:
        """True when ``reuse`` and ``out`` already holds this stage made from the same inputs, every artifact
        intact (then the stage skips its work)."""
        if not reuse or not is_up_to_date(self.out, manifest):
            return False
        if not quiet:
            say(f"[dim]{self.stage}: up to date ({self.out})[/dim]")
        return True

    @contextlib.contextmanager
    def writing(self, manifest: Manifest, *, check: Callable[[Path], None] | None = None) -> Iterator[Path]:
        """A temporary sibling of ``out`` under the run's lock; when the body is done, ``manifest`` is written into
        it last and read back, every artifact it lists is re-hashed, ``check(tmp)`` (the stage's own reload check)
        runs, and only then does the directory replace ``out``. Any failure leaves ``out`` as it was."""
        with atomic_dir(self.out, self.stage) as tmp:
            yield tmp
            write_manifest(tmp, manifest)
            if not verify_artifacts(tmp, read_manifest(tmp)):  # a bug, not user input
                raise RuntimeError(f"{self.stage}: an artifact differs from what its manifest records")
            if check is not None:
                check(tmp)
