"""`edgepipe pipeline RECIPE`: every stage the recipe asks for, in order, skipping those already up to date."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgepipe.progress import say
from edgepipe.recipe import Recipe, load_recipe
from edgepipe.report import update_report


def _quantize_config(recipe: Recipe):
    """The recipe's quantize section with its defaults filled from the rest of the recipe."""
    config = recipe.quantize
    update: dict[str, Any] = {}
    if config.max_drop is None:
        update["max_drop"] = recipe.eval.max_accuracy_drop
    if recipe.target and "tensorrt_version" not in config.model_fields_set:
        from edgepipe.targets import get_target

        update["tensorrt_version"] = get_target(recipe.target).tensorrt_max  # the cache header names it
    return config.model_copy(update=update)


def run_pipeline(recipe_path: Path, out: Path) -> dict[str, Any]:
    """Run the recipe into run directory ``out``; returns the report (also written to out/report.json)."""
    from edgepipe.stages.evaluate import evaluate
    from edgepipe.stages.export import export
    from edgepipe.stages.train import train

    recipe: Recipe = load_recipe(recipe_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if Path(recipe_path).resolve() != (out / "recipe.yaml").resolve():
        shutil.copyfile(recipe_path, out / "recipe.yaml")

    train_dir = train(recipe, out / "train", reuse=True)
    export(train_dir, out / "export", recipe.export, reuse=True)
    if recipe.prune is not None:
        from edgepipe.stages.prune import prune

        prune_dir = prune(train_dir, out / "prune", recipe.prune, reuse=True)
        export(prune_dir, out / "export-pruned", recipe.export, reuse=True, name="pruned-onnx-fp32")
    if recipe.quantize is not None:
        from edgepipe.stages.quantize import quantize

        quantize(out, out / "quantize", _quantize_config(recipe), reuse=True)

    report = evaluate(out, max_accuracy_drop=recipe.eval.max_accuracy_drop, batch_size=recipe.eval.batch_size)
    report = update_report(out, report)
    say(f"pipeline: report → {out / 'report.json'}")
    return report
