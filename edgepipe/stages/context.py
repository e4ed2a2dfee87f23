"""The run context a command opens once and passes down: the typed recipe, the run layout, the task, the dataset
record and the budget, each read once.

Before it, each stage reached back into train/manifest.json and re-validated the recipe piece by piece (the
train section for prune and QAT, eval's budget for quantize, bench and the bundle) with its own fallbacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgepipe.artifacts import MANIFEST, DatasetRecord, Manifest, read_manifest
from edgepipe.errors import EdgepipeError
from edgepipe.progress import say
from edgepipe.recipe import BenchConfig, EvalConfig, Recipe, TrainConfig, load_recipe
from edgepipe.run import PRUNE, RunLayout, is_run_root
from edgepipe.tasks import Budget, Task, decide_budget, task_of

_REQUIRED = ("name", "model", "dataset")  # recipe keys without which there is no recipe to speak of


@dataclass(frozen=True)
class RunContext:
    """What every stage of one command knows about the run it works in."""

    recipe: Recipe | None  # None: a model that carries no recipe (an ONNX file outside any run)
    layout: RunLayout | None  # None: a source outside a run directory
    task: Task
    dataset: DatasetRecord | None
    budget: Budget  # spent: what the source model already lost against the original (prune's share)

    @property
    def train(self) -> TrainConfig:
        return self.recipe.train if self.recipe is not None else TrainConfig()

    @property
    def eval(self) -> EvalConfig:
        return self.recipe.eval if self.recipe is not None else EvalConfig()

    @property
    def bench(self) -> BenchConfig:
        return (self.recipe.bench if self.recipe is not None else None) or BenchConfig()

    @property
    def name(self) -> str | None:
        return self.recipe.name if self.recipe is not None else None

    @property
    def target(self) -> str | None:
        return self.recipe.target if self.recipe is not None else None


def recorded_recipe(recorded: dict[str, Any] | None, where: str = "manifest") -> Recipe | None:
    """The typed recipe a manifest recorded. A section this edgepipe no longer accepts (a run made by an older one)
    falls back to its defaults, said once, rather than making the run unreadable."""
    if not recorded:
        return None
    recipe = dict(recorded)
    for _ in range(len(recipe) + 1):
        try:
            return Recipe.model_validate(recipe)
        except ValidationError as exc:
            section = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else None
            quantize = recipe.get("quantize")
            if section is None and isinstance(quantize, dict) and "max_drop" in quantize:
                # two budgets, recorded before a run had one: eval's is the one its eval and bundle always used
                recipe["quantize"] = {k: v for k, v in quantize.items() if k != "max_drop"}
                continue
            if section is None or section in _REQUIRED or section not in recipe:
                raise EdgepipeError(f"{where}: the recorded recipe no longer reads "
                                    f"({exc.errors()[0]['msg']}); rerun the pipeline") from None
            say(f"[dim]{where}: the recorded recipe's {section}: section is from another edgepipe; its defaults "
                "are used[/dim]")
            del recipe[section]
    return None


def _run_of(directory: Path | None) -> RunLayout | None:
    """The run a stage directory belongs to (its parent holds train/ or import/), or the run directory itself."""
    if directory is None:
        return None
    directory = Path(directory).absolute()
    for candidate in (directory, directory.parent):
        if is_run_root(candidate):
            return RunLayout(candidate)
    return None


def spent_by(manifest: Manifest | None, layout: RunLayout | None) -> float:
    """What the model of a stage (a prune/ stage, or the export of one) already lost against the original, on val:
    the prune stage's own record (older prune manifests: their measured val drop); 0 for the original."""
    if manifest is None:
        return 0.0
    prune_manifest = manifest if manifest.stage == PRUNE else None
    if prune_manifest is None and layout is not None and layout.has(layout.prune):
        candidate = read_manifest(layout.prune)
        if manifest.parents.get("model") in {a.sha256 for a in candidate.artifacts}:
            prune_manifest = candidate
    if prune_manifest is None:
        return 0.0
    metrics = prune_manifest.metrics
    record = metrics.get("budget") or {}
    if "used" in record:
        return float(record.get("spent_before", 0.0)) + max(float(record["used"]), 0.0)
    # prune manifests made before the budget record: their measured val drop (before tasks: in accuracy points)
    drop = ((metrics.get("score") or {}).get("drop") or {}).get("val")
    if drop is None:
        drop = ((metrics.get("accuracy") or {}).get("drop_points") or {}).get("val")
    return max(float(drop), 0.0) if drop is not None else 0.0


def open_context(manifest: Manifest | None, directory: Path | None, *, recipe: Recipe | None = None,
                 max_drop: float | None = None) -> RunContext:
    """The context of a command working from the stage ``directory`` (its ``manifest``). ``recipe``: the typed
    recipe when the caller holds it (the pipeline), else the run's recipe copy, else the one the manifests recorded;
    ``max_drop``: a command's own budget (``--max-drop``), which wins over the recipe's."""
    layout = _run_of(directory)
    if recipe is None and layout is not None and layout.recipe_copy.is_file():
        # The recipe the pipeline last ran (copied once training accepted it): its eval, quantize and bench sections
        # are current, where train/manifest.json keeps those of the recipe that trained the model.
        recipe = load_recipe(layout.recipe_copy)
    if recipe is None and manifest is not None:
        recorded, where = manifest.recipe, directory
        if not recorded and layout is not None and layout.has(layout.origin):  # stages made before carry_from
            recorded, where = read_manifest(layout.origin).recipe, layout.origin
        recipe = recorded_recipe(recorded, f"{where / MANIFEST}" if where else "manifest")
    if manifest is None:
        from edgepipe.tasks import task_named

        task = task_named(recipe.task if recipe is not None else None)
    else:
        task = task_of(manifest)
    budget = decide_budget(task, recipe, override=max_drop)
    budget = budget.after(spent_by(manifest, layout))
    return RunContext(recipe, layout, task, manifest.dataset if manifest is not None else None, budget)


def run_context(run_dir: Path, *, recipe: Recipe | None = None, max_drop: float | None = None) -> RunContext:
    """The context of a whole run directory (eval, bench, bundle, the pipeline after training): its origin stage."""
    origin = RunLayout(Path(run_dir)).require_origin()
    return open_context(read_manifest(origin), origin, recipe=recipe, max_drop=max_drop)
