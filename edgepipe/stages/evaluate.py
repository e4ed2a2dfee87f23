"""`edgepipe eval`: accuracy of every artifact of a run on the test split, against the original model.

Artifacts are found through the manifests (each stage lists what it made), so a new stage's files are
evaluated without touching this module. Each result names the backend that actually ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import read_manifest
from edgepipe.data import load_stage_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.onnx_export import parity
from edgepipe.progress import progress_bar, say
from edgepipe.recipe import DEFAULT_MAX_ACCURACY_DROP, EvalConfig
from edgepipe.run import ORIGINAL, TRAIN, RunLayout, stage_dir
from edgepipe.runners.base import infer_in_batches
from edgepipe.runners.select import open_runner, tensorrt_problem


def macro_auc(logits: np.ndarray, labels: np.ndarray) -> float | None:
    """One-vs-rest ROC AUC averaged over classes (None when a class is missing from the labels)."""
    from sklearn.metrics import roc_auc_score

    shifted = np.exp(logits - logits.max(1, keepdims=True))
    probabilities = shifted / shifted.sum(1, keepdims=True)
    try:
        if probabilities.shape[1] == 2:
            return float(roc_auc_score(labels, probabilities[:, 1]))
        return float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    except ValueError:
        return None


def _run_inputs(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], np.ndarray, np.ndarray, list[dict]]:
    """A run directory: the recipe, the dataset record and test split (reloaded), no precomputed rows."""
    train_manifest = read_manifest(stage_dir(run_dir, TRAIN))
    dataset = load_stage_dataset(train_manifest)
    record = {"name": dataset.name, "test_samples": int(len(dataset.test.y)), "labels": dataset.labels}
    return (train_manifest.recipe or {}), record, dataset.test.x, dataset.test.y, []


def _bundle_inputs(bundle: Path) -> tuple[dict[str, Any], dict[str, Any], np.ndarray, np.ndarray, list[dict]]:
    """A deploy bundle (no PyTorch here): the stored test samples, and the original row from its stored outputs."""
    from edgepipe.bundles import load_reference

    reference = load_reference(bundle)  # names a missing or changed file
    manifest = reference.manifest
    original = manifest.original
    record = {"name": manifest.dataset.name, "test_samples": int(len(reference.y)),
              "labels": manifest.dataset.labels, "bundle": {"target": manifest.target["name"]}}
    row = {"name": ORIGINAL, "precision": "fp32", "format": "torch", "path": str(bundle / original["reference_file"]),
           "size_bytes": original["size_bytes"], "stage": TRAIN, "backend": "torch (stored outputs)",
           "device": "recorded when bundled", "logits": reference.logits}
    recipe = {**(manifest.recipe or {}), "name": manifest.extra("recipe_name", bundle.name)}
    recipe.setdefault("eval", {"max_accuracy_drop": manifest.extra("max_accuracy_drop", DEFAULT_MAX_ACCURACY_DROP)})
    return recipe, record, reference.x, reference.y, [row]


def accuracy_on_runtime(run_dir: Path, directory: Path, artifact, runtime: str, threads: int | None = None,
                        batch_size: int = 256) -> float:
    """Top-1 of one ONNX artifact run on ``runtime`` (a CPU runtime other than eval's onnxruntime) on the run's
    test split, or the bundle's stored samples: bench measures each (artifact, runtime) pair it may pick."""
    from edgepipe.bundles import is_bundle

    inputs = _bundle_inputs if is_bundle(Path(run_dir)) else _run_inputs
    _, _, test_x, test_y, _ = inputs(Path(run_dir))
    with open_runner(directory, artifact, threads=threads, runtime=runtime) as runner:
        logits = infer_in_batches(runner, test_x, batch_size)
    return float((logits.argmax(1) == test_y).mean())


def evaluate(run_dir: Path, config: EvalConfig | None = None) -> dict[str, Any]:
    """Evaluate every artifact of ``run_dir``; returns the report dict (written by the caller or the CLI).

    ``run_dir`` may be a deploy bundle: then the test samples and the original model's outputs come from
    the bundle (nothing imports torch) and its engines run on TensorRT where it is available. ``config`` left
    out: the budget and batch size of the run's recipe (a bundle's: the budget it was bundled with).
    """
    from edgepipe.bundles import is_bundle

    run_dir = Path(run_dir)
    inputs = _bundle_inputs if is_bundle(run_dir) else _run_inputs
    recipe, dataset_record, test_x, test_y, stored_rows = inputs(run_dir)
    if config is None:
        config = EvalConfig.model_validate(recipe.get("eval") or {})
    max_accuracy_drop, batch_size = config.max_accuracy_drop, config.batch_size

    artifacts = RunLayout(run_dir).artifacts()
    results, original_logits = [], None
    predictions: dict[str, np.ndarray] = {}  # artifact name -> top-1 per test sample
    by_sha: dict[str, str] = {}  # a file's sha256 -> its artifact name (to find each artifact's parent)
    parent_shas: dict[str, set[str]] = {}
    for row in stored_rows:  # the original's outputs, recorded where PyTorch ran
        logits = row.pop("logits")
        original_logits = logits if original_logits is None else original_logits
        row["accuracy"] = float((logits.argmax(1) == test_y).mean())
        row["auc"] = macro_auc(logits, test_y)
        row.update({k: v for k, v in parity(original_logits, logits).items() if k != "samples"})
        results.append(row)
    engine_problem = tensorrt_problem() if any(a.format == "engine" for _, a in artifacts) else None
    with progress_bar() as bar:
        task = bar.add_task("eval", total=len(artifacts))
        for directory, artifact in artifacts:
            bar.update(task, description=f"eval {artifact.name}")
            row = {"name": artifact.name, "precision": artifact.precision, "format": artifact.format,
                   "path": str(directory / artifact.file), "size_bytes": artifact.size_bytes,
                   "stage": directory.name}
            if artifact.format == "engine" and engine_problem:
                row.update(backend="tensorrt", skipped=f"not evaluated here: {engine_problem}")
                results.append(row)
                bar.update(task, advance=1)
                continue
            with open_runner(directory, artifact) as runner:
                logits = infer_in_batches(runner, test_x, batch_size)
                row["backend"], row["device"] = runner.backend, runner.device
            if original_logits is None:
                original_logits = logits
            row["accuracy"] = float((logits.argmax(1) == test_y).mean())
            row["auc"] = macro_auc(logits, test_y)
            row.update({k: v for k, v in parity(original_logits, logits).items() if k != "samples"})
            predictions[artifact.name] = logits.argmax(1)
            by_sha[artifact.sha256] = artifact.name
            parent_shas[artifact.name] = set(read_manifest(directory).parents.values())
            results.append(row)
            bar.update(task, advance=1)

    if not results or results[0]["name"] != ORIGINAL:
        raise EdgepipeError(f"{run_dir}: no original model found (train/manifest.json lists no 'original')")
    original = results[0]
    original_right = (original_logits.argmax(1) == test_y) if original_logits is not None else None
    for row in results:
        if "accuracy" in row:
            row["accuracy_drop_pts"] = round((original["accuracy"] - row["accuracy"]) * 100, 4)
            row["within_budget"] = row["accuracy_drop_pts"] <= max_accuracy_drop
            if row["name"] in predictions and original_right is not None:
                row["drop_ci95_pts"] = drop_interval(original_right, predictions[row["name"]] == test_y)
            parent = next((by_sha[sha] for sha in parent_shas.get(row["name"], ()) if sha in by_sha
                           and by_sha[sha] != row["name"]), None)
            if parent is not None:  # an INT8 file against the FP32 graph it was made from, not only the original
                row["parent"] = parent
                row["agreement_with_parent"] = float((predictions[row["name"]] == predictions[parent]).mean())
    failed = [r["name"] for r in results if r.get("within_budget") is False]
    samples = int(len(test_y))
    resolution = 100.0 / samples if samples else float("inf")
    report = {
        "recipe": recipe.get("name", run_dir.name),
        "dataset": dataset_record,
        "original": {"accuracy": original["accuracy"], "auc": original["auc"], "backend": original["backend"],
                     "path": original["path"]},
        "max_accuracy_drop": max_accuracy_drop,
        "samples": samples,
        "resolution_pts": resolution,  # one test sample, in points
        "budget_resolvable": max_accuracy_drop >= resolution,
        "artifacts": results,
        "passed": not failed,
        "failed": failed,
    }
    if engine_problem:
        say(f"[yellow]eval: engines skipped: {engine_problem}; their ONNX sources ran on onnxruntime[/yellow]")
    if not report["budget_resolvable"]:
        say(f"[yellow]eval: the {max_accuracy_drop} pt budget is finer than one test sample ({resolution:.2f} pt on "
            f"{samples} samples): it cannot be resolved here; evaluate on more samples[/yellow]")
    return report


def drop_interval(original_right: np.ndarray, artifact_right: np.ndarray) -> float:
    """Half-width, in points, of the 95 % confidence interval of the accuracy drop: a paired difference on the
    same samples (the two models are right and wrong on mostly the same images), normal approximation."""
    difference = original_right.astype(np.float64) - artifact_right.astype(np.float64)
    if len(difference) < 2:
        return float("inf")
    return float(1.96 * difference.std(ddof=1) / np.sqrt(len(difference)) * 100)
