"""User-facing errors: one line that says what was wrong and what to do; the CLI turns them into exit code 2.

The root of them is the device runtime's own error (edgepipe/device/errors.py, which cannot import edgepipe): an
error raised by the device code the workstation runs (the builder, the engine, a bundle) is an EdgepipeError as it
stands, so nothing translates it and every `except EdgepipeError` sees it.
"""

from edgepipe.device.errors import DeviceError as EdgepipeError
from edgepipe.device.errors import MissingPiece as MissingDependency

__all__ = ["EdgepipeError", "MissingDependency", "first_line"]


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name (some exceptions say nothing)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
