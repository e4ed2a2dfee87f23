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


def _build_engines(out: Path, recipe: Recipe) -> None:
    """TensorRT engines where TensorRT and a GPU exist; elsewhere one line, and the CPU artifacts carry on."""
    from edgepipe.errors import MissingDependency
    from edgepipe.stages.build import build

    config = recipe.build
    try:
        build(out, None, precision=config.precision, target=recipe.target, workspace_mib=config.workspace_mib,
              batch=config.batch, dla_core=config.dla_core,
              gpu_fallback=config.gpu_fallback and config.dla_core is not None, sparsity=config.sparsity,
              opt_level=config.opt_level, timing_cache=out / "trt.timing.cache")
    except MissingDependency as exc:
        say(f"[yellow]build skipped: {exc}[/yellow]")


def run_pipeline(recipe_path: Path, out: Path) -> dict[str, Any]:
    """Run the recipe into run directory ``out``; returns the report (also written to out/report.json)."""
    from edgepipe.stages.bench import finish_report
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

    if recipe.build is not None:
        _build_engines(out, recipe)
    report = evaluate(out, max_accuracy_drop=recipe.eval.max_accuracy_drop, batch_size=recipe.eval.batch_size)
    update_report(out, report)
    report = finish_report(out, recipe)  # bench (in a fresh process), report.md/.png, the deployable pick
    if recipe.target:
        from edgepipe.stages.bundle import make_bundle

        make_bundle(out, recipe.target, out / f"bundle-{recipe.target}")
    say(f"pipeline: report → {out / 'report.json'}")
    return report
