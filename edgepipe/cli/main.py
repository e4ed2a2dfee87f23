"""The `edgepipe` command: one typer module per command, composed here.

Command modules import heavy libraries (torch, onnxruntime, tensorrt) inside their functions so
that `edgepipe --help` stays fast and works without optional dependencies.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Annotated, Any

import typer

from edgepipe import __version__
from edgepipe.errors import EdgepipeError

app = typer.Typer(
    name="edgepipe",
    help="PyTorch training to optimized edge inference: train, prune, quantize, export, build, eval, bench.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# command name -> module; each module defines `command`, a typer-annotated function.
# Order is the order `--help` lists them (the order of the pipeline).
COMMANDS = {
    "train": "edgepipe.cli.train",
    "prune": "edgepipe.cli.prune",
    "export": "edgepipe.cli.export",
    "quantize": "edgepipe.cli.quantize",
    "check": "edgepipe.cli.check",
    "build": "edgepipe.cli.build",
    "eval": "edgepipe.cli.evaluate",
    "bench": "edgepipe.cli.bench",
    "bundle": "edgepipe.cli.bundle",
    "infer": "edgepipe.cli.infer",
    "pipeline": "edgepipe.cli.pipeline",
    "doctor": "edgepipe.cli.doctor",
    "targets": "edgepipe.cli.targets",
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgepipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """edgepipe: artifact dir in, artifact dir out, accuracy checked at every stage."""


def user_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """User errors become one line on stderr and exit code 2 (bugs still show a traceback)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except EdgepipeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: nothing was written (stages write atomically)", err=True)
            raise typer.Exit(130) from None

    return wrapper


for _name, _module in COMMANDS.items():
    _command = importlib.import_module(_module).command
    app.command(_name, help=_command.__doc__)(user_errors(_command))


def main() -> None:
    app()
