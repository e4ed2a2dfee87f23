"""The `edgepipe` command: one typer module per command, composed here.

Command modules import heavy libraries (torch, onnxruntime, tensorrt) inside their functions so
that `edgepipe --help` stays fast and works without optional dependencies.
"""

from __future__ import annotations

import functools
import importlib
import math
import sys
import warnings
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from edgepipe import __version__
from edgepipe.errors import EdgepipeError, first_line
from edgepipe.trust import trusting


def click_exceptions() -> tuple[type[Exception], type[Exception]]:
    """(UsageError, ClickException) of the click that typer runs on, read off typer's public BadParameter: typer >=
    0.20 carries its own click (the private typer._click), older releases use click itself."""
    bases = {klass.__name__: klass for klass in typer.BadParameter.__mro__}
    return bases["UsageError"], bases["ClickException"]


class _OneLineUsageErrors(TyperGroup):
    """A bad option value or a missing argument is one line and exit code 2, like every other user error
    (typer would draw a multi-line box); help and our own errors are unchanged."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        usage_error, click_exception = click_exceptions()
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except usage_error as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `edgepipe` alone: the help text, as typer shows it
                exc.show()
                sys.exit(exc.exit_code)
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            typer.echo(f"error: {exc.format_message()}{where}", err=True)
            sys.exit(2)
        except click_exception as exc:
            typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="edgepipe",
    cls=_OneLineUsageErrors,
    help="PyTorch training to optimized edge inference: train, prune, quantize, export, build, eval, bench.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# command name -> module; each module defines `command`, a typer-annotated function.
# Order is the order `--help` lists them (the order of the pipeline).
COMMANDS = {
    "train": "edgepipe.cli.train",
    "import": "edgepipe.cli.import_model",
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
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    trust_code: Annotated[bool, typer.Option(
        "--trust-code", help="Let a run directory or bundle you trust rebuild a model from the "
                             "package.module:callable its manifest names (off: manifests are data).")] = False,
) -> None:
    """edgepipe: artifact dir in, artifact dir out, accuracy checked at every stage."""
    if trust_code:  # until the command ends; the environment carries it into edgepipe's own child processes
        ctx.with_resource(trusting(everything=True))


def user_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """User errors become one line on stderr and exit code 2 (bugs still show a traceback)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():
            if isinstance(value, float) and not math.isfinite(value):
                typer.echo(f"error: --{name.replace('_', '-')} must be a finite number, got {value}", err=True)
                raise typer.Exit(2)
        try:
            with warnings.catch_warnings():
                # Library deprecation and user warnings are not the user's business on this terminal.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", FutureWarning)
                return function(*args, **kwargs)
        except EdgepipeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # the machine said no: read-only output, not a directory, disk full, permission
            where = f": {exc.filename}" if exc.filename else ""
            typer.echo(f"error: {exc.strerror or first_line(exc)}{where}", err=True)
            raise typer.Exit(2) from None
        except RecursionError:
            typer.echo("error: an input file nests too deeply to be read", err=True)
            raise typer.Exit(2) from None
        except Exception as exc:
            pydantic = sys.modules.get("pydantic")
            if pydantic is None or not isinstance(exc, pydantic.ValidationError):
                raise  # a bug: keep the traceback
            # A value that a typed config refuses (its range, its choices): one line, as every command says it.
            from edgepipe.cli.options import option_error

            typer.echo(f"error: {option_error(exc)}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: nothing was written (stages write atomically)", err=True)
            raise typer.Exit(130) from None

    return wrapper


for _name, _module in COMMANDS.items():
    _command = importlib.import_module(_module).command
    app.command(_name, help=_command.__doc__)(user_errors(_command))


def main() -> None:
    app()
