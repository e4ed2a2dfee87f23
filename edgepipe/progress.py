"""Rich progress bars and console, shared by every stage. Progress goes to stderr; results to stdout."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Piped output (CI logs, README examples) gets a fixed width wide enough for the result tables (bench's, with two
# CPU runtimes and their settings, is ~150 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class _Silent:
    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        return None


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress | _Silent]:
    if not enabled or os.environ.get("EDGEPIPE_NO_PROGRESS"):
        yield _Silent()
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        yield bar


def say(message: str) -> None:
    """A one-line status message on stderr (keeps stdout clean for --json)."""
    err_console.print(message, highlight=False)


def piped_progress(message: str) -> None:
    """A plain progress line on stderr where the live bar cannot show (stderr is not a terminal: a pipe, a CI log,
    `edgepipe pipeline`'s fresh bench process): a rich Progress draws nothing there until it ends. Off with
    EDGEPIPE_NO_PROGRESS, like the bar."""
    if os.environ.get("EDGEPIPE_NO_PROGRESS") or err_console.is_terminal:
        return
    err_console.print(message, highlight=False, markup=False, soft_wrap=True)
