"""`edgepipe infer`: classify image files with any artifact, using the preprocessing its manifest recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def command(
    model: Annotated[Path, typer.Argument(help="Run dir, stage dir, deploy bundle, .onnx, .engine or model.pt.")],
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.")],
    top_k: Annotated[int, typer.Option(min=1, help="How many classes to show per image.")] = 3,
    artifact: Annotated[
        str | None, typer.Option(help="Artifact name to run from a directory (e.g. int8-trt, original).")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for onnxruntime/PyTorch.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON.")] = False,
) -> None:
    """Predict labels for images; a directory runs its engine (TensorRT) or else its FP32 ONNX (onnxruntime)."""
    from rich.table import Table

    from edgepipe.infer import infer
    from edgepipe.progress import console, say

    result = infer(model, images, top_k=top_k, artifact=artifact, threads=threads)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    if result["note"]:
        say(f"[yellow]{result['note']}[/yellow]")
    table = Table(title=f"{result['path']} · {result['backend']} ({result['device']})")
    for column in ("image", "prediction", "probability", f"top {top_k}"):
        table.add_column(column, justify="right" if column == "probability" else "left")
    for row in result["predictions"]:
        best = row["top"][0]
        others = ", ".join(f"{t['label']} {t['probability']:.1%}" for t in row["top"])
        table.add_row(row["file"], best["label"], f"{best['probability']:.2%}", others)
    console.print(table)
