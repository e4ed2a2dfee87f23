"""Issue 3's prune floors on real MNIST, from the shipped mnist-resnet recipe, and 2:4 sparsity on its trained model.

The channel test reads the session's shared `pipeline_run("mnist-resnet")` (train, prune, export-pruned, eval),
so it costs no training of its own; the 2:4 test fine-tunes that run's trained model for one epoch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import edgepipe.stages.prune as prune_stage
from edgepipe.artifacts import read_manifest
from edgepipe.checkpoint import load_model
from edgepipe.data import load_stage_dataset
from edgepipe.recipe import ExportConfig, PruneConfig
from edgepipe.stages.export import export
from edgepipe.stages.prune import prune
from edgepipe.tasks import task_of
from edgepipe.training import score

pytestmark = pytest.mark.integration

# The floors of issue 3 for the mnist-resnet recipe (test split, after fine-tuning).
MIN_MAC_RATIO = 2.0
MAX_DROP_POINTS = 0.3
# The speed floor (ORT b64 throughput >= 0.6 x the MAC ratio) is a timing: benchmarks/cpu_table.py checks it;
# here only that the stage measured both models side by side.


@pytest.fixture(scope="module")
def resnet_run(pipeline_run) -> Path:
    return pipeline_run("mnist-resnet")


def test_recipe_prune_meets_the_mac_and_accuracy_floors_and_measures_latency(resnet_run):
    manifest = read_manifest(resnet_run / "prune")
    metrics = manifest.metrics
    assert manifest.config["method"] == "channel"
    mac_ratio = metrics["macs"]["ratio"]
    assert mac_ratio >= MIN_MAC_RATIO, metrics["macs"]
    assert metrics["score"]["drop"]["test"] <= MAX_DROP_POINTS, metrics["score"]
    # Unpruned and pruned ONNX timed side by side, interleaved, in the prune stage's own process.
    assert set(metrics["speedup"]) >= {"1", "64"} and all(v > 0 for v in metrics["speedup"].values())

    # eval (another code path) agrees: the pruned model and its ONNX export against the original.
    report = json.loads((resnet_run / "report.json").read_text())
    rows = {row["name"]: row for row in report["artifacts"]}
    for name in ("pruned", "pruned-onnx-fp32"):
        assert rows[name]["drop"] <= MAX_DROP_POINTS, rows[name]
    assert read_manifest(resnet_run / "export-pruned").metrics["parity"]["agreement"] >= 0.999  # vs pruned

    # The narrower architecture rebuilds from the manifest's JSON history and gives the recorded accuracy.
    model, pruned_manifest = load_model(resnet_run / "prune")
    test_accuracy = score(model, load_stage_dataset(pruned_manifest).test, torch.device("cpu"),
                          task_of(pruned_manifest))
    assert test_accuracy == pytest.approx(metrics["score"]["after_finetune"]["test"])


def test_2_4_sparsity_keeps_accuracy_and_the_pattern_survives_export(resnet_run, tmp_path, monkeypatch):
    from edgepipe.pruning.sparsity24 import onnx_weight_patterns

    monkeypatch.setattr(prune_stage, "LATENCY_ROUNDS", 1)
    monkeypatch.setattr(prune_stage, "LATENCY_SECONDS", 0.05)
    run = tmp_path / "run"
    shutil.copytree(resnet_run / "train", run / "train")
    out = prune(run, run / "prune-2-4", PruneConfig(method="2:4", finetune_epochs=1))
    manifest = read_manifest(out)
    accuracy_metrics = manifest.metrics["score"]
    assert accuracy_metrics["unpruned"]["test"] >= 0.98  # a really trained model
    # BatchNorm statistics re-estimated after masking: without that this model falls to ~24 % before fine-tuning.
    assert accuracy_metrics["before_finetune"]["test"] >= 0.95, accuracy_metrics
    # Measured: 0.6-0.9 pt lost on test with 1-3 fine-tuning epochs (val unchanged); half the weights of 32-128
    # channel layers is a lot for this small model. The issue sets no 2:4 accuracy floor; this bounds regressions.
    assert accuracy_metrics["drop"]["test"] <= 1.0, accuracy_metrics
    layers = manifest.sparsity["layers"]
    assert {"stages.0.conv1", "stages.1.conv2", "stages.2.conv2"} <= set(layers), layers
    exported = export(out, run / "export-2-4", ExportConfig())
    sparse = [p for p in onnx_weight_patterns(exported / "model.onnx") if p.sparse_2_4]
    assert len(sparse) >= len(layers)
