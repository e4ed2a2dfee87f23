"""One budget per run, decided in one function and spent against the original by prune, then quantize."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgepipe.artifacts import read_manifest
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import parse_recipe
from edgepipe.run import EXPORT, EXPORT_PRUNED, TRAIN
from edgepipe.stages.context import open_context, recorded_recipe, run_context
from edgepipe.tasks import decide_budget, task_named

# A pruned run written before typed manifests (tests/unit/data/README.md): eval.max_accuracy_drop 10 points, and
# a prune stage that lost 4.44 points on val.
BEFORE = Path(__file__).parent / "data" / "manifests-before-run-layout"
RECIPE = {"name": "r", "model": {"name": "mlp"}, "dataset": {"name": "digits"}}


def test_the_budget_is_a_commands_own_then_the_recipes_then_the_tasks():
    classification = task_named("classification")
    assert decide_budget(classification).max_drop == 0.5 and decide_budget(task_named("detection")).unit == "pts"
    recipe = parse_recipe({**RECIPE, "eval": {"max_drop": 0.3}})
    assert decide_budget(classification, recipe).max_drop == 0.3
    assert decide_budget(classification, recipe, override=2.0).max_drop == 2.0
    # quantize.max_drop alone is the run's budget too (the bundle gates on it, as quantize spent it)
    assert decide_budget(classification, parse_recipe({**RECIPE, "quantize": {"max_drop": 0.8}})).max_drop == 0.8
    assert decide_budget(classification, {"eval": {"max_accuracy_drop": 2}}).max_drop == 2.0


def test_a_recipe_with_two_budgets_is_refused_in_one_line():
    with pytest.raises(EdgepipeError, match=r"^<recipe>: eval.max_drop 0.5 and quantize.max_drop 1.0 differ: a run has "
                                            "one budget"):
        parse_recipe({**RECIPE, "eval": {"max_drop": 0.5}, "quantize": {"max_drop": 1.0}})
    assert parse_recipe({**RECIPE, "eval": {"max_drop": 1}, "quantize": {"max_drop": 1.0}}).eval.max_drop == 1.0


def test_spending_leaves_the_rest_and_says_so():
    budget = decide_budget(task_named("classification"), override=1.0).after(0.7)
    assert budget.spent == 0.7 and budget.left == 0.3
    assert budget.record(0.2) == {"max_drop": 1.0, "unit": "pts", "spent_before": 0.7, "used": 0.2, "left": 0.1}
    assert budget.line(0.2) == "used 0.20 of the 1 pts budget (0.70 spent before; 0.10 left)"
    assert budget.line(0.5) == "used 0.50 of the 1 pts budget (0.70 spent before; over it by 0.20)"
    assert budget.after(0.5).left == 0.0  # overspent: nothing left, never a negative allowance
    assert budget.after(-0.4).spent == 0.7  # a model that scored better than its parent spends nothing


@pytest.fixture
def old_run(tmp_path) -> Path:
    return Path(shutil.copytree(BEFORE, tmp_path / "run"))


def test_quantize_of_a_pruned_model_is_told_what_prune_left(old_run):
    pruned = open_context(read_manifest(old_run / EXPORT_PRUNED), old_run / EXPORT_PRUNED)
    assert pruned.budget.max_drop == 10.0 and pruned.budget.spent == pytest.approx(4.4444, abs=1e-4)
    assert pruned.budget.left == pytest.approx(5.5556, abs=1e-4)
    unpruned = open_context(read_manifest(old_run / EXPORT), old_run / EXPORT)
    assert unpruned.budget.spent == 0.0 and unpruned.budget.left == 10.0
    # eval gates against the whole budget; the typed recipe comes with it
    whole = run_context(old_run)
    assert whole.budget.left == 10.0 and whole.recipe.prune.ratio == 0.25 and whole.layout.root == old_run


def test_a_prune_stage_records_its_share_and_the_next_stage_reads_it(old_run):
    from edgepipe.artifacts import write_manifest

    prune = read_manifest(old_run / "prune")
    prune.metrics["budget"] = {"max_drop": 10.0, "unit": "pts", "spent_before": 0.0, "used": 1.25, "left": 8.75}
    write_manifest(old_run / "prune", prune)
    context = open_context(read_manifest(old_run / EXPORT_PRUNED), old_run / EXPORT_PRUNED, max_drop=2.0)
    assert context.budget.max_drop == 2.0 and context.budget.left == 0.75


def test_a_recorded_recipe_from_another_edgepipe_keeps_what_still_reads(old_run):
    recorded = read_manifest(old_run / TRAIN).recipe
    assert recorded_recipe({**recorded, "bench": {"no_such_key": 1}}).bench is None
    two = recorded_recipe({**recorded, "eval": {"max_drop": 1.0}, "quantize": {"max_drop": 3.0}})
    assert two.eval.max_drop == 1.0 and two.quantize.max_drop is None  # recorded before one budget: eval's holds
    with pytest.raises(EdgepipeError, match="the recorded recipe no longer reads"):
        recorded_recipe({"name": "r"})
