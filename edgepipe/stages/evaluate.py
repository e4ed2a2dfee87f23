"""`edgepipe eval`: the task's score of every artifact of a run on the test split, against the original model.

Artifacts are found through the manifests (each stage lists what it made), so a new stage's files are
evaluated without touching this module. Each result names the backend that actually ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import read_manifest
from edgepipe.data import load_stage_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.onnx_export import parity
from edgepipe.progress import progress_bar, say
from edgepipe.recipe import EvalConfig
from edgepipe.run import ORIGINAL, TRAIN, RunLayout
from edgepipe.runners.base import infer_in_batches
from edgepipe.runners.select import open_runner, tensorrt_problem
from edgepipe.stages.context import RunContext, open_context
from edgepipe.tasks import Task, decide_budget
from edgepipe.tasks.base import constant_outputs


@dataclass
class EvalInputs:
    """What eval scores against: the run context (recipe, task, budget), the report's name for the run, the dataset
    record, the test inputs and targets, and the original's stored outputs when PyTorch cannot run here (a
    bundle)."""

    context: RunContext
    name: str
    dataset: dict[str, Any]
    x: Any  # the test inputs: an array (a bundle's stored samples) or a split, streamed batch by batch
    targets: np.ndarray
    stored_original: dict[str, Any] | None = None

    @property
    def task(self) -> Task:
        return self.context.task


def _run_inputs(run_dir: Path) -> EvalInputs:
    """A run directory: the recipe, the dataset record and test split (reloaded)."""
    train_dir = RunLayout(run_dir).require_origin()
    train_manifest = read_manifest(train_dir)
    context = open_context(train_manifest, train_dir)
    dataset = load_stage_dataset(train_manifest)
    record = {"name": dataset.name, "test_samples": int(len(dataset.test)), "labels": dataset.labels}
    return EvalInputs(context, context.name or run_dir.name, record, dataset.test,
                      context.task.targets(dataset.test))


def _bundle_inputs(bundle: Path) -> EvalInputs:
    """A deploy bundle (no PyTorch here): the stored test samples, and the original row from its stored outputs."""
    from edgepipe.bundles import BundleFacts, load_reference

    reference = load_reference(bundle)  # names a missing or changed file
    manifest = reference.manifest
    facts = BundleFacts.of(manifest)
    original = facts.original
    # The budget the bundle was made with (older bundles: under its older name) is the bundle's, whatever its recipe
    context = open_context(manifest, bundle, max_drop=facts.max_drop)
    record = {"name": manifest.dataset.name, "test_samples": int(len(reference.x)),
              "labels": manifest.dataset.labels, "bundle": {"target": facts.target["name"]}}
    recorded_by = original.get("backend") or "torch"
    row = {"name": ORIGINAL, "precision": "fp32", "format": "torch" if recorded_by == "torch" else "onnx",
           "path": str(bundle / original["reference_file"]), "size_bytes": original["size_bytes"], "stage": TRAIN,
           "backend": f"{recorded_by} (stored outputs)",
           "device": "recorded when bundled", "outputs": reference.outputs}
    return EvalInputs(context, facts.recipe_name or bundle.name, record, reference.x, reference.targets, row)


def _inputs(run_dir: Path) -> EvalInputs:
    from edgepipe.bundles import is_bundle

    return _bundle_inputs(run_dir) if is_bundle(run_dir) else _run_inputs(run_dir)


def score_on_runtime(run_dir: Path, directory: Path, artifact, runtime: str, threads: int | None = None,
                     batch_size: int = 256) -> float:
    """The task's score of one ONNX artifact run on ``runtime`` (a CPU runtime other than eval's onnxruntime) on
    the run's test split, or the bundle's stored samples: bench measures each (artifact, runtime) pair it may pick."""
    inputs = _inputs(Path(run_dir))
    with open_runner(directory, artifact, threads=threads, runtime=runtime) as runner:
        outputs = infer_in_batches(runner, inputs.x, batch_size)
    return inputs.task.score(outputs, inputs.targets)


RUNTIME_SCORE_BATCH = 256  # samples per call when bench scores an artifact on another CPU runtime


def scores_on_runtimes(run_dir: Path, directory: Path, artifact, runtimes: list[str], threads: int | None = None,
                       samples: int | None = None) -> tuple[dict[str, float], int, int]:
    """The task's score of one ONNX artifact on each of ``runtimes``, on the first ``samples`` of the run's (seeded)
    test split (None: all): bench's budget scores a sample, with the same samples on every runtime so their
    difference is paired. Returns ({runtime: score}, samples scored, test samples)."""
    inputs = _inputs(Path(run_dir))
    total = len(inputs.targets)
    count = total if samples is None else min(samples, total)
    scores = {}
    for runtime in runtimes:
        with open_runner(directory, artifact, threads=threads, runtime=runtime) as runner:
            outputs = infer_in_batches(runner, _first(inputs.x, count, total), RUNTIME_SCORE_BATCH)
        scores[runtime] = inputs.task.score(outputs, inputs.targets[:count])
    return scores, count, total


class _Head:
    """The first ``count`` samples of a streamed split (edgepipe.data), streamed the same way."""

    def __init__(self, split: Any, count: int) -> None:
        self.split, self.count = split, count

    def __getattr__(self, name: str) -> Any:  # sample_shape and the like: the split's own
        return getattr(self.split, name)

    def batches(self, batch_size: int):
        left = self.count
        for batch in self.split.batches(batch_size):
            if left <= 0:
                return
            size = len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)
            if size > left:
                batch = {k: v[:left] for k, v in batch.items()} if isinstance(batch, dict) else batch[:left]
            left -= min(size, left)
            yield batch


def _first(x: Any, count: int, total: int) -> Any:
    if count >= total:
        return x
    return _Head(x, count) if hasattr(x, "batches") else x[:count]


def _scored_row(row: dict[str, Any], outputs: np.ndarray, inputs: EvalInputs, original_outputs: np.ndarray
                ) -> dict[str, Any]:
    """A row with the task's metrics of ``outputs`` and how they differ from the original's."""
    task = inputs.task
    metrics = task.metrics(outputs, inputs.targets, inputs.dataset["labels"])
    row.update(score=metrics[task.metric], metrics=metrics)
    row.update({k: v for k, v in parity(original_outputs, outputs, task).items() if k != "samples"})
    dead = constant_outputs(outputs)
    if dead:  # scored, but a dead model is never "within budget": it fails the run, with the reason said
        row["degenerate"] = dead
    return row


def evaluate(run_dir: Path, config: EvalConfig | None = None) -> dict[str, Any]:
    """Evaluate every artifact of ``run_dir``; returns the report dict (written by the caller or the CLI).

    ``run_dir`` may be a deploy bundle: then the test samples and the original model's outputs come from
    the bundle (nothing imports torch) and its engines run on TensorRT where it is available. ``config`` left
    out: the budget and batch size of the run's recipe (a bundle's: the budget it was bundled with); a budget
    given in ``config`` wins.
    """
    run_dir = Path(run_dir)
    inputs = _inputs(run_dir)
    task = inputs.task
    budget = inputs.context.budget
    if config is not None and config.max_drop is not None:
        budget = decide_budget(task, inputs.context.recipe, override=config.max_drop)
    max_drop = budget.max_drop
    batch_size = (config or inputs.context.eval).batch_size

    artifacts = RunLayout(run_dir).artifacts()
    results: list[dict[str, Any]] = []
    outputs_of: dict[str, np.ndarray] = {}  # artifact name -> its outputs on the test samples
    by_sha: dict[str, str] = {}  # a file's sha256 -> its artifact name (to find each artifact's parent)
    parent_shas: dict[str, set[str]] = {}
    if inputs.stored_original is not None:  # the original's outputs, recorded where PyTorch ran
        row = dict(inputs.stored_original)
        outputs_of[ORIGINAL] = row.pop("outputs")
        results.append(_scored_row(row, outputs_of[ORIGINAL], inputs, outputs_of[ORIGINAL]))
    engine_problem = tensorrt_problem() if any(a.format == "engine" for _, a in artifacts) else None
    with progress_bar() as bar:
        progress = bar.add_task("eval", total=len(artifacts))
        for directory, artifact in artifacts:
            bar.update(progress, description=f"eval {artifact.name}")
            row = {"name": artifact.name, "precision": artifact.precision, "format": artifact.format,
                   "path": str(directory / artifact.file), "size_bytes": artifact.size_bytes,
                   "stage": directory.name}
            if artifact.format == "engine" and engine_problem:
                row.update(backend="tensorrt", skipped=f"not evaluated here: {engine_problem}")
                results.append(row)
                bar.update(progress, advance=1)
                continue
            with open_runner(directory, artifact) as runner:
                outputs = infer_in_batches(runner, inputs.x, batch_size)
                row["backend"], row["device"] = runner.backend, runner.device
            outputs_of.setdefault(ORIGINAL, outputs)
            outputs_of[artifact.name] = outputs
            results.append(_scored_row(row, outputs, inputs, outputs_of[ORIGINAL]))
            by_sha[artifact.sha256] = artifact.name
            parent_shas[artifact.name] = set(read_manifest(directory).parents.values())
            bar.update(progress, advance=1)

    if not results or results[0]["name"] != ORIGINAL:
        raise EdgepipeError(f"{run_dir}: no original model found (train/manifest.json lists no 'original')")
    original = results[0]
    for row in results:
        if "score" not in row:
            continue
        row["drop"] = round(task.drop(original["score"], row["score"]), 4)
        row["within_budget"] = row["drop"] <= max_drop
        if row["name"] != ORIGINAL:
            row["drop_ci95"] = task.drop_interval(outputs_of[ORIGINAL], outputs_of[row["name"]], inputs.targets)
        parent = next((by_sha[sha] for sha in parent_shas.get(row["name"], ()) if sha in by_sha
                       and by_sha[sha] != row["name"]), None)
        if parent is not None:  # an INT8 file against the FP32 graph it was made from, not only the original
            row["parent"] = parent
            row["agreement_with_parent"] = task.agreement(outputs_of[parent], outputs_of[row["name"]])
    for row in results:
        if row.get("degenerate"):
            say(f"[yellow]eval: {row['name']}: {row['degenerate']}[/yellow]")
    failed = [r["name"] for r in results if r.get("within_budget") is False or r.get("degenerate")]
    samples = int(len(inputs.x))
    resolution = task.resolution(samples)
    report = {
        "recipe": inputs.name,
        "task": {**task.describe(), "metric_label": task.metric_label, "agreement": task.agreement_label},
        "dataset": inputs.dataset,
        "original": {"score": original["score"], "metrics": original["metrics"], "backend": original["backend"],
                     "path": original["path"]},
        "max_drop": max_drop,
        "samples": samples,
        "resolution": resolution,  # one test sample's worth of the metric, in the budget's unit
        "budget_resolvable": max_drop >= resolution,
        "artifacts": results,
        "passed": not failed,
        "failed": failed,
    }
    if engine_problem:
        say(f"[yellow]eval: engines skipped: {engine_problem}; their ONNX sources ran on onnxruntime[/yellow]")
    if not report["budget_resolvable"]:
        say(f"[yellow]eval: the {max_drop} {task.unit} budget is finer than one test sample ({resolution:.2f} "
            f"{task.unit} on {samples} samples): it cannot be resolved here; evaluate on more samples[/yellow]")
    return report
