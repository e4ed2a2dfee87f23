"""User-facing errors: one line that says what was wrong and what to do; the CLI turns them into exit code 2."""


class EdgepipeError(Exception):
    """Bad input from the user (recipe, file, shape, ...). Its message is shown as one line, exit code 2."""

    exit_code = 2


class MissingDependency(EdgepipeError):
    """An optional heavy dependency (tensorrt, pycuda, CUDA) is not available here."""



def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name (some exceptions say nothing)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
