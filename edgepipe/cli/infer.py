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
    draw: Annotated[Path | None, typer.Option(help="Detection: write each image with its boxes drawn (PNG) into "
                                                   "this folder.")] = None,
) -> None:
    """Predict labels (a detector: boxes) for images; a directory runs its engine (TensorRT) or else its FP32 ONNX
    (onnxruntime)."""
    from edgepipe.infer import infer
    from edgepipe.progress import console, say
    from edgepipe.report import infer_table

    result = infer(model, images, top_k=top_k, artifact=artifact, threads=threads, draw_to=draw)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    if result["note"]:
        say(f"[yellow]{result['note']}[/yellow]")
    console.print(infer_table(result, top_k))
    if draw is not None:
        say(f"infer: {len(result['predictions'])} image(s) with their boxes drawn in {draw}")
