"""User-facing errors: one line that says what was wrong and what to do; the CLI turns them into exit code 2."""


class EdgepipeError(Exception):
    """Bad input from the user (recipe, file, shape, ...). Its message is shown as one line, exit code 2."""

    exit_code = 2


class MissingDependency(EdgepipeError):
    """An optional heavy dependency (tensorrt, pycuda, CUDA) is not available here."""

