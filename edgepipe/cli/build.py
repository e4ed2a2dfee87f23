"""`edgepipe build`: a TensorRT engine from a run directory or an ONNX file.

Its build options are generated from the device runtime's settings table (edgepipe/device/settings.py, standard
library only, so `--help` stays quick), where each setting is declared once with its flag, default and help; the
device's own `python3 edgepipe_device.py build` takes the same flags.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgepipe.device.settings import OPTIONS

# The Python type typer parses each kind of setting as (a batch is MIN:OPT:MAX text, parsed by the settings).
_TYPES = {"int": Optional[int], "bool": bool, "choice": str, "batch": str, "path": Optional[Path]}  # noqa: UP045


def _parameter(option: Any) -> inspect.Parameter:
    """One typer option for a setting: its flag, its help and its default from the settings table."""
    default = ":".join(map(str, option.default)) if option.kind == "batch" else option.default
    flags = f"{option.flag}/--no-{option.flag[2:]}" if option.kind == "bool" else option.flag
    declared = typer.Option(flags, help=option.help + ".")
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[_TYPES[option.kind], declared])


def command(**values: Any) -> None:
    """Build a TensorRT engine (model.<precision>.engine + manifest) for this machine's TensorRT and GPU."""
    from edgepipe.artifacts import read_manifest
    from edgepipe.cli.options import stage_config
    from edgepipe.recipe import BuildConfig
    from edgepipe.stages.build import build

    # A batch is text on the command line and a tuple in the config: the settings table parses it (one rule).
    settings = {option.name: option.check(values[option.name]) if option.kind == "batch" else values[option.name]
                for option in OPTIONS if option.recipe}
    flags = {option.name: option.flag for option in OPTIONS}
    config = stage_config(BuildConfig, settings, flags=flags)
    stage = build(values["source"], values["out"], config, target=values["target"],
                  timing_cache=values["timing_cache"], rebuild=values["rebuild"])
    manifest = read_manifest(stage)
    config = manifest.config
    machine = config["machine"]
    typer.echo(config["precision_reason"])
    typer.echo(config["plan"])
    for artifact in manifest.artifacts:
        typer.echo(
            f"wrote {stage / artifact.file} ({artifact.size_bytes / 2**20:.1f} MiB) for TensorRT "
            f"{machine['tensorrt_version']} on {machine['gpu_name']}"
        )


command.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
    inspect.Parameter("source", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
        Path, typer.Argument(help="Run directory (export/ + quantize/) or an .onnx file.")]),
    inspect.Parameter("target", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[str], typer.Option(help="Device profile (jetson-orin-nano, desktop-ampere, ...); refuses "  # noqa: UP045
                                    "what it can't do.")]),
    *(_parameter(option) for option in OPTIONS),
    inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[Path], typer.Option(help="Output directory (default: SOURCE/build-<precision>).")]),  # noqa: UP045
    inspect.Parameter("rebuild", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option(help="Rebuild even when a matching engine exists.")]),
], return_annotation=None)
