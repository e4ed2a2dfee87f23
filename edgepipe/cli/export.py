from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgepipe import defaults


def command(
    source: Annotated[Path, typer.Argument(help="Run directory, train/ or prune/ stage directory, or model.pt.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output stage dir (default: RUN/export).")] = None,
    opset: Annotated[int, typer.Option(min=13, max=23, help="ONNX opset.")] = defaults.EXPORT["opset"],
    static_batch: Annotated[bool, typer.Option(help="Fix the batch axis instead of a dynamic one.")]
    = not defaults.EXPORT["dynamic_batch"],
    exporter: Annotated[str, typer.Option(help="dynamo (default in torch>=2.9) or torchscript.")]
    = defaults.EXPORT["exporter"],
) -> None:
    """Export a trained model to ONNX (dynamic batch); check it with onnx.checker and against PyTorch."""
    from edgepipe.checkpoint import resolve_checkpoint
    from edgepipe.cli.options import stage_config
    from edgepipe.recipe import ExportConfig
    from edgepipe.run import EXPORT_NAMES, export_dir_for
    from edgepipe.stages.export import export

    stage = resolve_checkpoint(source)
    config = stage_config(ExportConfig, {"opset": opset, "dynamic_batch": not static_batch, "exporter": exporter})
    default_out = export_dir_for(stage)
    export(stage, out or default_out, config, name=EXPORT_NAMES[default_out.name])
