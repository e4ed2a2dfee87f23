"""`edgepipe pipeline RECIPE`: every stage the recipe asks for, in order, skipping those already up to date."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgepipe.progress import say
from edgepipe.recipe import Recipe, load_recipe
from edgepipe.report import update_report


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

    report = evaluate(out, max_accuracy_drop=recipe.eval.max_accuracy_drop, batch_size=recipe.eval.batch_size)
    report = update_report(out, report)
    say(f"pipeline: report → {out / 'report.json'}")
    return report
