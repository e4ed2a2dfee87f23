from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory; the model goes to OUT/train/.")
    ] = Path("runs/latest"),
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last finished epoch.")] = False,
    init_from: Annotated[str | None, typer.Option(help="Transfer learning: start from this checkpoint or run.")] = None,
    freeze_backbone: Annotated[bool, typer.Option(help="With --init-from: train only the classifier.")] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override train.epochs.")] = None,
    device: Annotated[str | None, typer.Option(help="Override train.device (auto, cpu, cuda, cuda:N).")] = None,
) -> None:
    """Train the recipe's model (CPU or CUDA, DDP under torchrun); keep the best checkpoint by the task's val score."""
    from edgepipe.recipe import load_recipe

    loaded = load_recipe(recipe)  # a refused recipe costs no torch import (~1 GiB of RSS with CUDA torch)
    overrides = {k: v for k, v in {"init_from": init_from, "epochs": epochs, "device": device}.items() if v is not None}
    if freeze_backbone:
        overrides["freeze_backbone"] = True
    if overrides:
        loaded = loaded.model_copy(update={"train": loaded.train.model_copy(update=overrides)})
        loaded = type(loaded).model_validate(loaded.model_dump())  # re-validate the overridden values
    from edgepipe.stages.train import train

    train(loaded, out / "train", resume=resume)
