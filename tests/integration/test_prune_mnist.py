"""Prune a briefly trained ResNet on real MNIST digits: fewer MACs, accuracy kept, 2:4 verified in the ONNX."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import edgepipe.stages.prune as prune_stage
from edgepipe.artifacts import read_manifest
from edgepipe.checkpoint import load_model
from edgepipe.recipe import ExportConfig, PruneConfig, load_recipe
from edgepipe.stages.export import export
from edgepipe.stages.prune import prune
from edgepipe.stages.train import train
from edgepipe.training import accuracy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory) -> Path:
    """A small ResNet (width 16, two blocks) trained briefly on mnist5k (over 90 % test accuracy, not converged)."""
    root = tmp_path_factory.mktemp("prune-mnist")
    (root / "recipe.yaml").write_text(yaml.safe_dump({
        "name": "prune-mnist",
        "model": {"name": "resnet", "params": {"width": 16, "blocks": [1, 1]}},
        "dataset": {"name": "mnist5k", "split_seed": 0},
        "train": {"optimizer": "nesterov", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005,
                  "schedule": "onecycle", "epochs": 4, "batch_size": 64, "seed": 0},
    }))
    recipe = load_recipe(root / "recipe.yaml")
    train(recipe, root / "run" / "train")
    return root / "run"


@pytest.fixture(autouse=True)
def short_latency(monkeypatch):
    monkeypatch.setattr(prune_stage, "LATENCY_ROUNDS", 2)
    monkeypatch.setattr(prune_stage, "LATENCY_SECONDS", 0.05)


def test_half_the_macs_with_accuracy_kept_and_a_reloadable_export(mnist_run):
    out = prune(mnist_run, mnist_run / "prune", PruneConfig(target_macs=0.5, finetune_epochs=2, finetune_lr=0.02))
    metrics = read_manifest(out)["metrics"]
    assert metrics["macs"]["ratio"] >= 2.0
    assert metrics["accuracy"]["unpruned"]["test"] > 0.9  # the brief training did work
    assert metrics["accuracy"]["drop_points"]["test"] <= 2.0
    assert metrics["latency"]["batches"]["64"]["pruned"]["p50_ms"] > 0

    model, manifest = load_model(out)
    dataset_accuracy = accuracy(model, _dataset(manifest).test, torch.device("cpu"))
    assert dataset_accuracy == pytest.approx(metrics["accuracy"]["after_finetune"]["test"])
    exported = export(out, mnist_run / "export-pruned", ExportConfig(exporter="torchscript"), name="pruned-onnx-fp32")
    assert read_manifest(exported)["metrics"]["parity"]["agreement"] >= 0.999


def test_2_4_sparsity_keeps_accuracy_and_the_pattern_survives_export(mnist_run, tmp_path):
    from edgepipe.pruning.sparsity24 import onnx_weight_patterns

    out = prune(mnist_run, tmp_path / "prune-2-4", PruneConfig(method="2:4", finetune_epochs=2, finetune_lr=0.02))
    manifest = read_manifest(out)
    assert manifest["metrics"]["accuracy"]["drop_points"]["test"] <= 2.0
    layers = manifest["sparsity"]["layers"]
    assert {"stages.0.conv1", "stages.0.conv2", "stages.1.conv2"} <= set(layers)
    exported = export(out, tmp_path / "export-2-4", ExportConfig(exporter="torchscript"))
    sparse = [p for p in onnx_weight_patterns(exported / "model.onnx") if p.sparse_2_4]
    assert len(sparse) >= len(layers)


def _dataset(manifest):
    from edgepipe.stages.export import load_stage_dataset

    return load_stage_dataset(manifest)
