"""The prune stage on tiny synthetic runs: manifest, reload without unpickling, 2:4 flag for build, bad input."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from helpers.recipes import write_recipe

import edgepipe.stages.prune as prune_stage
from edgepipe.artifacts import read_manifest, write_manifest
from edgepipe.checkpoint import load_model
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import ExportConfig, PruneConfig, load_recipe
from edgepipe.rundir import LOCK
from edgepipe.stages.export import export
from edgepipe.stages.prune import prune
from edgepipe.stages.train import train
from edgepipe.trust import trusting


@pytest.fixture(autouse=True)
def quick_latency(quick_prune_latency):
    """Prune's side-by-side timing in one short round: these tests check what it records, not the speed."""


def _train(root: Path, model: dict, **sections) -> Path:
    recipe = load_recipe(write_recipe(root / "recipe.yaml", model=model, **sections))
    train(recipe, root / "run" / "train")
    return root / "run"


@pytest.fixture(scope="module")
def vgg_run(tmp_path_factory) -> Path:
    """vgg on synthetic 1x12x12: conv widths 16 and 32 (prunable by 8s, and 2:4-eligible after the stem)."""
    return _train(tmp_path_factory.mktemp("vgg"), {"name": "vgg", "params": {"widths": [16, 32], "dropout": 0.0}},
                  train={"epochs": 4})


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_channel_pruning_writes_a_reloadable_smaller_model(vgg_run, tmp_path):
    run = _copy(vgg_run, tmp_path)
    out = prune(run, run / "prune", PruneConfig(ratio=0.5, finetune_epochs=1))
    manifest = read_manifest(out)
    assert manifest.stage == "prune" and manifest.config["method"] == "channel"
    [artifact] = manifest.artifacts
    assert (artifact.name, artifact.format, artifact.precision) == ("pruned", "torch", "fp32")
    rebuild = manifest.model["rebuild"]
    assert rebuild["function"] == "edgepipe.pruning.replay:rebuild" and rebuild["history"]
    json.dumps(manifest.model)  # the architecture is plain JSON

    metrics = manifest.metrics
    assert metrics["macs"]["after"] < metrics["macs"]["before"] / 2.5  # half the channels: ~4x fewer MACs
    assert metrics["params"]["after"] < metrics["params"]["before"]
    assert set(metrics["latency"]["batches"]) == {"1", "64"}
    assert all(side["p50_ms"] > 0 for per_model in metrics["latency"]["batches"].values()
               for side in per_model.values())
    assert set(metrics["speedup"]) == {"1", "64"}
    for key in ("unpruned", "before_finetune", "after_finetune"):
        assert set(metrics["score"][key]) == {"val", "test"}
    # prune spends first from the run's budget against the original: what it used on val, what it leaves quantize
    budget = metrics["budget"]
    assert budget["spent_before"] == 0.0 and budget["used"] == round(max(0.0, metrics["score"]["drop"]["val"]), 4)
    assert budget["left"] == round(budget["max_drop"] - budget["used"], 4)

    pruned, _ = load_model(out)  # spec -> zoo model -> replayed history -> tensors (weights_only)
    original, _ = load_model(run / "train")
    assert sum(p.numel() for p in pruned.parameters()) == metrics["params"]["after"]
    assert pruned.features[0].out_channels == 8 and original.features[0].out_channels == 16
    x = torch.randn(3, 1, 12, 12)
    state = torch.load(out / "model.pt", weights_only=True)["model"]
    assert torch.equal(state["classifier.weight"], pruned.classifier.weight)
    assert pruned(x).shape == (3, 4)

    # the pipeline's next step: export the pruned model, checked for parity by export itself
    exported = export(out, run / "export-pruned", ExportConfig(exporter="torchscript"), name="pruned-onnx-fp32")
    assert read_manifest(exported).artifacts[0].name == "pruned-onnx-fp32"


def test_reuse_skips_an_up_to_date_prune_and_a_new_config_reruns(vgg_run, tmp_path, monkeypatch):
    run = _copy(vgg_run, tmp_path)
    config = PruneConfig(ratio=0.5, finetune_epochs=0)
    prune(run, run / "prune", config)
    first = read_manifest(run / "prune").created
    monkeypatch.setattr(prune_stage, "prune_width", lambda *a, **k: pytest.fail("should have been reused"))
    prune(run, run / "prune", config, reuse=True)
    assert read_manifest(run / "prune").created == first
    monkeypatch.undo()
    prune(run, run / "prune", PruneConfig(ratio=0.25, finetune_epochs=0), reuse=True)
    assert read_manifest(run / "prune").config["ratio"] == 0.25


def test_pruning_a_pruned_model_chains_the_histories(vgg_run, tmp_path):
    run = _copy(vgg_run, tmp_path)
    first = prune(run, tmp_path / "first", PruneConfig(ratio=0.5, finetune_epochs=0, round_to=1))
    second = prune(first, tmp_path / "second", PruneConfig(ratio=0.5, finetune_epochs=0, round_to=1))
    once, twice = read_manifest(first), read_manifest(second)
    assert len(twice.model["rebuild"]["history"]) > len(once.model["rebuild"]["history"])
    model, _ = load_model(second)
    assert model.features[0].out_channels == 4  # 16 -> 8 -> 4
    assert twice.metrics["macs"]["after"] < once.metrics["macs"]["after"]
    # the second prune starts from what the first one spent
    assert twice.metrics["budget"]["spent_before"] == once.metrics["budget"]["used"]


def test_iterative_steps_finetune_after_each_step(vgg_run, tmp_path):
    run = _copy(vgg_run, tmp_path)
    out = prune(run, run / "prune", PruneConfig(target_macs=0.5, steps=2, finetune_epochs=1, importance="l2"))
    pruning = read_manifest(out).metrics["pruning"]
    assert [step["step"] for step in pruning["steps"]] == [1, 2]
    assert all(step["finetune"]["epochs"] == 1 for step in pruning["steps"])
    assert pruning["steps"][0]["macs"] > pruning["steps"][1]["macs"]  # the ratio is reached gradually
    assert pruning["search"]["one_shot_mac_fraction"] <= 0.5
    assert read_manifest(out).metrics["macs"]["kept_fraction"] <= 0.5 + 1e-9


def test_2_4_sparsity_is_flagged_for_the_tensorrt_build(vgg_run, tmp_path):
    from edgepipe.pruning.sparsity24 import follows_2_4
    from edgepipe.trt.inputs import find_source_files

    run = _copy(vgg_run, tmp_path)
    export(run / "train", run / "export", ExportConfig(exporter="torchscript"))
    assert not find_source_files(run).sparse_2_4
    out = prune(run, run / "prune", PruneConfig(method="2:4", finetune_epochs=1))
    manifest = read_manifest(out)
    assert manifest.artifacts[0].precision == "fp32-2:4"
    assert manifest.config["method"] == "2:4"
    layers = manifest.sparsity["layers"]
    assert manifest.sparsity["pattern"] == "2:4"
    assert layers == ["features.10", "features.3", "features.7"]  # every conv after the 1-channel stem
    assert manifest.sparsity["onnx"]["verified_weights"] >= len(layers)
    assert "Ampere" in manifest.sparsity["note"] and "256 channels" in manifest.sparsity["note"]
    model, _ = load_model(out)
    modules = dict(model.named_modules())
    assert all(follows_2_4(modules[name].weight) for name in layers)
    assert not follows_2_4(modules["features.0"].weight)
    assert manifest.metrics["macs"]["ratio"] == 1.0  # dense MAC count: 2:4 is no channel reduction
    assert find_source_files(run).sparse_2_4  # what `edgepipe build --sparsity` checks


def test_a_user_model_by_import_path_prunes_and_reloads(tmp_path, monkeypatch):
    package = tmp_path / "usermodels"
    package.mkdir()
    (package / "tiny_user_net.py").write_text(textwrap.dedent("""
        from torch import nn

        def build(num_classes, input_shape):
            channels = input_shape[0]
            return nn.Sequential(
                nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))
    """))
    monkeypatch.syspath_prepend(str(package))
    run = _train(tmp_path, {"name": "tiny_user_net:build", "params": {}}, train={"epochs": 2})
    with trusting(["tiny_user_net:build"]):  # what running the recipe that names it does
        out = prune(run, run / "prune", PruneConfig(ratio=0.5, finetune_epochs=1))
        model, manifest = load_model(out)
    assert manifest.model["name"] == "tiny_user_net:build"
    assert [m.out_channels for m in model if isinstance(m, torch.nn.Conv2d)] == [8, 16]
    assert model[8].out_features == 4  # the output layer keeps its classes


def test_recurrent_model_is_refused_and_nothing_is_written(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", model={"name": "lstm", "params": {"hidden": 16}},
                                      dataset={"name": "synthetic", "samples": 200, "num_classes": 4,
                                               "shape": [6, 8]}, train={"epochs": 1}))
    train(recipe, tmp_path / "run" / "train")
    with pytest.raises(EdgepipeError, match="not prunable by channels: its LSTM layer 'rnn'"):
        prune(tmp_path / "run", tmp_path / "run" / "prune", PruneConfig(ratio=0.5))
    with pytest.raises(EdgepipeError, match="2:4: model 'lstm' has no eligible layer"):
        prune(tmp_path / "run", tmp_path / "run" / "prune", PruneConfig(method="2:4"))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [LOCK, "train"]


def test_bad_sources_are_user_errors_and_leave_the_previous_result(vgg_run, tmp_path):
    run = _copy(vgg_run, tmp_path)
    prune(run, run / "prune", PruneConfig(ratio=0.5, finetune_epochs=0))
    before = (run / "prune" / "manifest.json").read_text()
    with pytest.raises(EdgepipeError, match="no layer named 'nope'"):
        prune(run, run / "prune", PruneConfig(ratio=0.3, ignore_layers=["nope"]))
    assert (run / "prune" / "manifest.json").read_text() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".") and p.name != LOCK]  # no staging leftovers

    manifest = read_manifest(run / "train")
    manifest.model = None
    write_manifest(run / "train", manifest)
    with pytest.raises(EdgepipeError, match="no model spec"):
        prune(run / "train", tmp_path / "elsewhere", PruneConfig(ratio=0.5))
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(EdgepipeError, match="does not exist"):
        prune(tmp_path / "missing", tmp_path / "out", PruneConfig(ratio=0.5))
