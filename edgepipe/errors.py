"""User-facing errors: one line that says what was wrong and what to do; the CLI turns them into exit code 2."""

from contextlib import contextmanager


class EdgepipeError(Exception):
    """Bad input from the user (recipe, file, shape, ...). Its message is shown as one line, exit code 2."""

    exit_code = 2


class MissingDependency(EdgepipeError):
    """An optional heavy dependency (tensorrt, CUDA, onnxruntime) is not available here."""


@contextmanager
def device_errors():
    """The device runtime's one-line errors (edgepipe/device/runtime.py cannot import edgepipe) as edgepipe's."""
    from edgepipe.device import runtime

    try:
        yield
    except runtime.MissingPiece as exc:
        raise MissingDependency(str(exc)) from None
    except runtime.DeviceError as exc:
        raise EdgepipeError(str(exc)) from None


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name (some exceptions say nothing)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
