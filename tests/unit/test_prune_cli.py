"""`edgepipe prune` through typer: the before/after table, and one-line errors (exit 2) that change nothing on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.recipes import write_recipe
from typer.testing import CliRunner

from edgepipe.artifacts import read_manifest, write_manifest
from edgepipe.cli.main import app
from edgepipe.recipe import load_recipe
from edgepipe.stages.train import train

runner = CliRunner()


@pytest.fixture(autouse=True)
def quick_latency(quick_prune_latency):
    """Prune's side-by-side timing in one short round: these tests check what it records, not the speed."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    recipe = load_recipe(write_recipe(root / "r.yaml", model={"name": "vgg", "params": {"widths": [16, 32]}},
                                      train={"epochs": 2}))
    train(recipe, root / "run" / "train")
    return root / "run"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_prune_prints_the_before_after_table(run):
    result = runner.invoke(app, ["prune", str(run), "--ratio", "0.5", "--finetune-epochs", "1",
                                 "--ignore", "features.0"])
    assert result.exit_code == 0, result.output
    for text in ("params", "MACs / sample", "test top-1", "latency p50, batch 64", "x fewer", "x faster"):
        assert text in result.output
    manifest = read_manifest(run / "prune")
    assert manifest.config["ignore_layers"] == ["features.0"] and manifest.config["ratio"] == 0.5


def test_a_latency_target_prints_where_the_time_goes(run):
    result = runner.invoke(app, ["prune", str(run), "--target-latency", "1000", "--batch", "2",
                                 "--finetune-epochs", "0"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "per-layer latency on onnxruntime, batch 2 (measured)" in flat and "per-call floor" in flat
    assert "meets the 1000.000 ms target on onnxruntime at batch 2" in flat
    manifest = read_manifest(run / "prune")
    assert manifest.config["target_latency_ms"] == 1000 and manifest.config["latency_batch"] == 2
    target, layers = manifest.metrics["latency_target"], manifest.metrics["layer_latency"]
    assert target["met"] and target["measured_ms"] == layers["pruned"]["total_ms"]
    assert layers["floor_ms"] < layers["unpruned"]["total_ms"]
    assert any(row["name"] == "features.0" for row in layers["unpruned"]["layers"])
    assert manifest.metrics["pruning"]["search"]["ratio"] == 0.0  # the unpruned model already meets it
    assert (run / "prune" / "latency_layers.png").stat().st_size > 10_000


@pytest.mark.parametrize("mode", ["on", "off"])
def test_distill_option_reaches_the_fine_tune_and_its_manifest_record(run, mode):
    result = runner.invoke(app, ["prune", str(run), "--ratio", "0.5", "--finetune-epochs", "1", "--distill", mode,
                                 "--distill-alpha", "0.7", "--distill-temperature", "2"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(run / "prune")
    assert manifest.config["distill"] == mode and manifest.config["distill_alpha"] == 0.7
    finetune = manifest.metrics["pruning"]["steps"][0]["finetune"]
    expected = {"alpha": 0.7, "temperature": 2.0, "kind": "logits-kl"} if mode == "on" else "off"
    assert finetune["distill"] == expected


def test_2_4_prints_where_the_speedup_can_appear(run):
    result = runner.invoke(app, ["prune", str(run / "train"), "--method", "2:4", "--finetune-epochs", "0",
                                 "--out", str(run / "sparse")])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "2:4 pattern (checked on the exported ONNX weights)" in flat
    assert "Ampere" in flat and "gain nothing" in flat
    assert read_manifest(run / "sparse").artifacts[0].precision == "fp32-2:4"


@pytest.mark.parametrize(("arguments", "message"), [
    (["--ratio", "1.5"], "--ratio: Input should be less than 1"),
    (["--ratio", "0"], "--ratio: Input should be greater than 0"),
    (["--ratio", "0.3", "--target-macs", "0.5"], "--target-macs: give either ratio or target_macs, not both"),
    ([], "--target-macs: channel pruning needs a target"),
    (["--method", "2:4", "--ratio", "0.5"], "--ratio: 2:4 sparsity always zeroes half the weights"),
    (["--method", "magic", "--ratio", "0.5"], "--method: Input should be 'channel' or '2:4'"),
    (["--method", "2:4", "--steps", "2"], "2:4 sparsity is applied in one step"),
    (["--ratio", "0.5", "--ignore", "features.42"],
     "no layer named 'features.42' in this model; layers: features.0, features.3"),
    (["--ratio", "0.5", "--importance", "bn_scale", "--ignore", "classifier"], None),
    (["--target-latency", "1", "--ratio", "0.3"], "--target-latency: give either ratio or target_latency_ms"),
    (["--target-latency", "1", "--target-macs", "0.3"], "--target-macs: give either target_latency_ms or target_macs"),
    (["--target-latency", "0"], "--target-latency: Input should be greater than 0"),
    (["--target-latency", "1", "--batch", "0"], "--batch: batch sizes must be positive integers"),
    (["--target-latency", "1", "--runtime", "cpu"], "--runtime: Input should be 'onnxruntime', 'openvino' or "
                                                    "'tensorrt'"),
    (["--ratio", "0.5", "--latency-profile", "p.json"], "--latency-profile: a trtexec profile goes with "
                                                        "latency_runtime tensorrt"),
    (["--target-latency", "0.000001"], "is below onnxruntime's measured per-call floor"),
    (["--target-latency", "1", "--runtime", "tensorrt"], "--exportProfile=profile.json --separateProfileRun` on the "
                                                         "device and pass --latency-profile profile.json"),
    (["--ratio", "0.5", "--distill", "on"], "--distill: distillation happens during the fine-tune, and "
                                            "finetune_epochs is 0"),
    (["--ratio", "0.5", "--distill", "always"], "--distill: Input should be 'auto', 'on' or 'off'"),
    (["--ratio", "0.5", "--distill-alpha", "1.5"], "--distill-alpha: Input should be less than or equal to 1"),
])
def test_bad_options_are_one_line_exit_2_and_change_nothing(run, arguments, message):
    before = _tree(run)
    result = runner.invoke(app, ["prune", str(run), "--finetune-epochs", "0", *arguments])
    if message is None:  # the control case: valid options do succeed
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]
    assert _tree(run) == before


def test_checkpoint_without_a_model_spec_is_refused(run):
    manifest = read_manifest(run / "train")
    manifest.model = None
    write_manifest(run / "train", manifest)
    before = _tree(run)
    result = runner.invoke(app, ["prune", str(run / "train" / "model.pt"), "--ratio", "0.5"])
    assert result.exit_code == 2
    assert "manifest has no model spec" in result.output
    assert _tree(run) == before


def test_a_model_without_eligible_2_4_layers_is_refused(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", model={"name": "mlp", "params": {"hidden": [30]}},
                                      train={"epochs": 1}))
    train(recipe, tmp_path / "run" / "train")
    before = _tree(tmp_path / "run")
    result = runner.invoke(app, ["prune", str(tmp_path / "run"), "--method", "2:4"])
    assert result.exit_code == 2
    assert "2:4: model 'mlp' has no eligible layer" in result.output
    assert _tree(tmp_path / "run") == before
