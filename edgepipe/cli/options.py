"""Command-line options onto a stage's typed config, in one place.

The defaults live in :mod:`edgepipe.defaults`, which recipe.py's models and the commands' options both read (so
``--help`` shows the models' values without importing pydantic); :func:`stage_config` builds the model from what
the options hold. A value the model refuses becomes one line naming the option, the same way for every command
(:func:`option_error`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from edgepipe.errors import EdgepipeError

Model = TypeVar("Model", bound=BaseModel)


def option_error(error: ValidationError, flags: dict[str, str] | None = None) -> str:
    """pydantic's first complaint as one line: "--speed-batch: Input should be greater than 0 (got 0)"."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    option = (flags or {}).get(field) or ("--" + field.replace("_", "-") if field else error.title)
    message = first["msg"].removeprefix("Value error, ")
    got = "" if first.get("input") is None or first["type"] == "missing" else f" (got {first['input']!r})"
    return f"{option}: {message}{got}"


def stage_config(model: type[Model], options: dict[str, Any], flags: dict[str, str] | None = None) -> Model:
    """``model`` from the options' values; ``flags`` maps a field to its option name where they differ."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise EdgepipeError(option_error(exc, flags)) from None
