"""`edgepipe bundle`: a directory to copy to the device: ONNX files for its target, references, README."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    run: Annotated[Path, typer.Argument(help="Run directory (train/ + export/, optionally prune/ and quantize/).")],
    target: Annotated[str, typer.Option(help="Device profile the bundle is for (see `edgepipe targets`).")],
    out: Annotated[Path, typer.Option(help="Bundle directory to write (replaced if it is an older bundle).")],
    samples: Annotated[
        int, typer.Option(min=1, help="Test samples stored with the original model's outputs, for `eval`.")
    ] = 500,
) -> None:
    """Bundle a run for a device without PyTorch: then `edgepipe build DIR` and `edgepipe eval DIR` there."""
    from edgepipe.artifacts import read_manifest
    from edgepipe.run import BUNDLE_README as README
    from edgepipe.stages.bundle import make_bundle

    bundle = make_bundle(run, target, out, samples=samples)
    manifest = read_manifest(bundle)
    typer.echo(f"wrote {bundle} for {manifest.target['name']}: {len(manifest.files or [])} files, "
               f"precisions {', '.join(manifest.precisions)}, original {manifest.original['score_text']} on "
               f"{manifest.original['samples']} samples")
    for excluded in manifest.excluded:
        typer.echo(f"left out {excluded['file']}: {excluded['reason']}")
    typer.echo(f"on the device: see {bundle / README}")
