"""Deploy bundles: per-target file selection, references, integrity, eval without torch, build on a bundle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from helpers.bundles import add_quantize_stage
from helpers.recipes import REPO, write_recipe
from typer.testing import CliRunner

from edgepipe import device
from edgepipe.artifacts import read_manifest, sha256_file
from edgepipe.bundles import check_bundle_target, load_reference, read_bundle
from edgepipe.cli.main import user_errors
from edgepipe.errors import EdgepipeError
from edgepipe.stages.bundle import make_bundle


def _cli(module: str, name: str) -> typer.Typer:
    import importlib

    app = typer.Typer()
    app.command(name)(user_errors(importlib.import_module(module).command))
    app.command("noop")(lambda: None)  # a second command keeps the subcommand name on the command line
    return app


@pytest.fixture(scope="module")
def quantized_run(tiny_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("bundle-run") / "run"
    shutil.copytree(tiny_run, run)
    add_quantize_stage(run)
    return run


@pytest.fixture(scope="module")
def orin_bundle(quantized_run, tmp_path_factory) -> Path:
    return make_bundle(quantized_run, "jetson-orin-nano", tmp_path_factory.mktemp("orin") / "bundle", samples=60)


def _copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    return copy


def test_orin_bundle_mimics_a_run_dir_so_build_finds_every_input(orin_bundle):
    from edgepipe.trt.inputs import find_source_files, plan_build

    files = find_source_files(orin_bundle)
    assert files.fp32_onnx == orin_bundle / "export" / "model.onnx"
    assert files.fp16_onnx == orin_bundle / "quantize" / "model.fp16.onnx"
    assert files.int8_trt_onnx == orin_bundle / "quantize" / "model.int8.trt.onnx"
    assert files.calibration_cache == orin_bundle / "quantize" / "trt.calib.cache"
    assert files.int8_cpu_onnx is None  # the u8s8 CPU graph is not for TensorRT
    plan_build(files, "int8", 8)  # the cache check against quantize's parents passes on the copied model.onnx
    manifest = read_bundle(orin_bundle)
    assert manifest.stage == "bundle" and manifest.target["name"] == "jetson-orin-nano"
    assert manifest.precisions == ["int8", "fp16", "fp32"]
    listed = {entry.path: entry.sha256 for entry in manifest.files}
    for path in ("export/model.onnx", "quantize/model.fp16.onnx", "quantize/model.int8.trt.onnx",
                 "quantize/trt.calib.cache", "quantize/manifest.json", "reference.npz", "labels.txt", "README.md",
                 "edgepipe_device.py", "edgepipe_device/__init__.py", "edgepipe_device/cli.py",
                 "edgepipe_device/scoring.py", "edgepipe_device/cuda.py"):
        assert listed[path] == sha256_file(orin_bundle / path), path
    shipped = {path.split("/", 1)[1] for path in listed if path.startswith("edgepipe_device/")}
    assert shipped == {module.name for module in Path(device.__file__).parent.glob("*.py")}  # the whole package
    kept = [a.name for a in read_manifest(orin_bundle / "quantize").artifacts]
    assert kept == ["fp16", "int8-trt"]
    readme = (orin_bundle / "README.md").read_text()
    assert "python3 bundle/edgepipe_device.py build bundle --precision int8" in readme
    assert "python3 bundle/edgepipe_device.py eval bundle" in readme
    assert "edgepipe build bundle --precision int8" in readme and "edgepipe eval bundle" in readme


def test_reference_is_the_original_models_outputs_on_stored_test_samples(orin_bundle, tiny_run):
    from edgepipe.data import load_stage_dataset
    from edgepipe.runners.base import infer_in_batches
    from edgepipe.runners.onnxruntime import OrtRunner

    with np.load(orin_bundle / "reference.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["outputs", "x", "y"]
    reference = load_reference(orin_bundle)
    test = load_stage_dataset(read_manifest(tiny_run / "train")).test
    assert len(reference.targets) == 60
    np.testing.assert_array_equal(reference.x, test.x[:60])
    np.testing.assert_array_equal(reference.targets, test.y[:60])
    with OrtRunner(tiny_run / "export" / "model.onnx") as runner:  # the export agrees with PyTorch to 1e-3
        np.testing.assert_allclose(reference.outputs, infer_in_batches(runner, test.x[:60]), atol=1e-3)
    original = read_manifest(orin_bundle).original
    assert original["score"] == pytest.approx(float((reference.outputs.argmax(1) == reference.targets).mean()))
    assert read_manifest(orin_bundle).task == {"name": "classification", "metric": "accuracy", "unit": "pts"}
    assert reference.manifest.dataset.labels == ["class0", "class1", "class2", "class3"]
    assert (orin_bundle / "labels.txt").read_text().split() == ["class0", "class1", "class2", "class3"]


def test_nano_bundle_leaves_int8_out_and_says_why(quantized_run, tmp_path):
    result = CliRunner().invoke(_cli("edgepipe.cli.bundle", "bundle"), [
        "bundle", str(quantized_run), "--target", "jetson-nano", "--out", str(tmp_path / "nano"), "--samples", "20"])
    assert result.exit_code == 0, result.output
    assert "left out quantize/model.int8.trt.onnx: int8: the target has no int8" in result.output
    names = {p.relative_to(tmp_path / "nano").as_posix() for p in (tmp_path / "nano").rglob("*") if p.is_file()}
    assert "quantize/model.fp16.onnx" in names
    assert not {"quantize/model.int8.trt.onnx", "quantize/trt.calib.cache", "quantize/model.int8.cpu.onnx"} & names
    assert read_manifest(tmp_path / "nano").precisions == ["fp16", "fp32"]


def test_eval_on_a_bundle_runs_where_importing_torch_fails(orin_bundle, tmp_path):
    bundle = _copy(orin_bundle, tmp_path)
    blocker = tmp_path / "no-torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('PyTorch is not installed on this device')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent), "EDGEPIPE_NO_PROGRESS": "1"}
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "not installed on this device" in probe.stderr
    code = ("import sys, json; from edgepipe.cli.main import main; sys.argv = ['edgepipe', 'eval', sys.argv[1], "
            "'--json', '--max-drop', '100']; main()")
    done = subprocess.run([sys.executable, "-c", code, str(bundle)], env=env, capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    reference = load_reference(bundle)
    original = float((reference.outputs.argmax(1) == reference.targets).mean())
    assert report["original"]["score"] == pytest.approx(original)
    assert report["dataset"]["test_samples"] == 60
    rows = {row["name"]: row for row in report["artifacts"]}
    assert set(rows) == {"original", "onnx-fp32", "fp16", "int8-trt"}
    assert rows["original"]["backend"] == "torch (stored outputs)"
    from edgepipe.runners.base import infer_in_batches
    from edgepipe.runners.onnxruntime import OrtRunner

    for name, file in (("onnx-fp32", "export/model.onnx"), ("fp16", "quantize/model.fp16.onnx"),
                       ("int8-trt", "quantize/model.int8.trt.onnx")):
        with OrtRunner(bundle / file) as runner:
            logits = infer_in_batches(runner, reference.x)
        expected = float((logits.argmax(1) == reference.targets).mean())
        assert rows[name]["backend"] == "onnxruntime" and rows[name]["score"] == pytest.approx(expected)
        assert rows[name]["drop"] == pytest.approx((original - expected) * 100, abs=1e-3)
        assert rows[name]["agreement"] == pytest.approx(float((logits.argmax(1) == reference.outputs.argmax(1)).mean()))
    assert rows["onnx-fp32"]["agreement"] == 1.0 and rows["fp16"]["drop"] <= 2.0
    assert json.loads((bundle / "report.json").read_text())["original"]["backend"] == "torch (stored outputs)"


def test_a_missing_or_changed_bundle_file_is_named(orin_bundle, tmp_path):
    app = _cli("edgepipe.cli.evaluate", "eval")
    bundle = _copy(orin_bundle, tmp_path)
    (bundle / "quantize" / "model.fp16.onnx").unlink()
    result = CliRunner().invoke(app, ["eval", str(bundle)])
    assert result.exit_code == 2
    assert "missing quantize/model.fp16.onnx" in result.output and "Traceback" not in result.output
    shutil.rmtree(bundle)
    bundle = _copy(orin_bundle, tmp_path)
    with open(bundle / "reference.npz", "ab") as handle:
        handle.write(b"\0")
    result = CliRunner().invoke(app, ["eval", str(bundle)])
    assert result.exit_code == 2 and "reference.npz differs" in result.output


def test_build_target_guard_refuses_a_bundle_for_another_target(orin_bundle, tmp_path):
    assert check_bundle_target(orin_bundle, None) == "jetson-orin-nano"
    assert check_bundle_target(orin_bundle, "jetson-orin-nano") == "jetson-orin-nano"
    with pytest.raises(EdgepipeError, match="bundled for jetson-orin-nano, not jetson-nano"):
        check_bundle_target(orin_bundle, "jetson-nano")
    with pytest.raises(EdgepipeError, match="known targets: jetson-nano"):
        check_bundle_target(orin_bundle, "jetson-nanoo")
    assert check_bundle_target(tmp_path, "jetson-nano") == "jetson-nano"  # not a bundle: nothing to guard


def test_bad_input_is_one_line_exit_2(quantized_run, orin_bundle, tmp_path):
    app = _cli("edgepipe.cli.bundle", "bundle")
    unknown = CliRunner().invoke(app, ["bundle", str(quantized_run), "--target", "jetson-nanoo",
                                       "--out", str(tmp_path / "b")])
    assert unknown.exit_code == 2 and "known targets: jetson-nano, jetson-xavier-nx" in unknown.output
    again = CliRunner().invoke(app, ["bundle", str(orin_bundle), "--target", "jetson-nano",
                                     "--out", str(tmp_path / "b")])
    assert again.exit_code == 2 and "already a deploy bundle" in again.output
    overwrite = CliRunner().invoke(app, ["bundle", str(quantized_run), "--target", "jetson-nano",
                                         "--out", str(quantized_run / "export")])
    assert overwrite.exit_code == 2 and "is not an edgepipe 'bundle' directory" in overwrite.output
    assert (quantized_run / "export" / "model.onnx").is_file()
    assert not (tmp_path / "b").exists()


def test_a_graph_the_target_cannot_build_refuses_the_bundle(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    add_quantize_stage(run, zero_point=5)  # asymmetric QDQ: TensorRT's parser rejects it
    refused = r"jetson-orin-nano cannot build quantize/model.int8.trt.onnx: .*asymmetric"
    with pytest.raises(EdgepipeError, match=refused):
        make_bundle(run, "jetson-orin-nano", tmp_path / "bundle", samples=10)
    assert not (tmp_path / "bundle").exists()
    make_bundle(run, "jetson-nano", tmp_path / "nano", samples=10)  # no INT8 there: the bad graph stays home


def test_build_on_a_bundle_then_eval_runs_the_engine_on_tensorrt(tmp_path, monkeypatch):
    from fakes.tensorrt_fake import install

    from edgepipe.recipe import BuildConfig, EvalConfig, load_recipe
    from edgepipe.stages.build import build
    from edgepipe.stages.evaluate import evaluate
    from edgepipe.stages.export import export
    from edgepipe.stages.train import train

    # ten classes: the fake engine computes logits[n, k] = sum(x[n]) * (k + 1)
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", dataset={"num_classes": 10, "shape": [1, 4, 4],
                                                                    "samples": 300}))
    run = tmp_path / "run"
    train(recipe, run / "train")
    export(run / "train", run / "export", recipe.export)
    bundle = make_bundle(run, "jetson-orin-nano", tmp_path / "bundle", samples=40)
    install(monkeypatch, "10.3.0", cc=(8, 7))
    target = check_bundle_target(bundle, None)
    engine_dir = build(bundle, None, BuildConfig(precision="fp16", batch=(1, 8, 16)), target=target)
    assert engine_dir == bundle / "build-fp16"
    report = evaluate(bundle, EvalConfig(max_drop=100))
    row = next(r for r in report["artifacts"] if r["format"] == "engine")
    reference = load_reference(bundle)
    fake_logits = reference.x.reshape(len(reference.x), -1).sum(1, keepdims=True) * np.arange(1, 11)
    assert row["backend"] == "tensorrt" and "skipped" not in row
    assert row["score"] == pytest.approx(float((fake_logits.argmax(1) == reference.targets).mean()))
    original = float((reference.outputs.argmax(1) == reference.targets).mean())
    assert row["drop"] == pytest.approx((original - row["score"]) * 100, abs=1e-3)
    read_bundle(bundle)  # the engine and report beside the bundled files leave it intact


def test_the_bundle_carries_trtexec_commands_for_what_it_ships(orin_bundle):
    manifest = read_bundle(orin_bundle)
    commands = {(c["precision"], c["how"]): c["command"] for c in manifest.trtexec}
    assert ("int8", "explicit INT8 from the QDQ graph") in commands
    assert all(command.startswith("/usr/src/tensorrt/bin/trtexec --onnx=") for command in commands.values())
    for command in commands.values():  # every file a command names is in the bundle
        onnx = command.split("--onnx=")[1].split()[0]
        assert (orin_bundle / onnx).is_file(), onnx
    assert "trtexec" in (orin_bundle / "README.md").read_text()


def test_a_bundle_made_before_the_task_seam_still_evaluates(orin_bundle, tmp_path):
    """reference.npz with "logits", the budget under max_accuracy_drop, no task record: both evaluators read it."""
    from edgepipe.artifacts import sha256_file
    from edgepipe.device import runtime
    from edgepipe.stages.evaluate import evaluate

    bundle = _copy(orin_bundle, tmp_path)
    with np.load(bundle / "reference.npz", allow_pickle=False) as data:
        x, y, outputs = data["x"], data["y"], data["outputs"]
    np.savez(bundle / "reference.npz", x=x, y=y, logits=outputs)
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["task"]
    manifest["max_accuracy_drop"] = 100.0
    del manifest["max_drop"]
    manifest["recipe"]["eval"] = {"max_accuracy_drop": 100.0, "batch_size": 256}
    for entry in manifest["files"]:
        if entry["path"] == "reference.npz":
            stored = bundle / "reference.npz"
            entry.update(sha256=sha256_file(stored), size_bytes=stored.stat().st_size)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    report = evaluate(bundle)
    assert report["max_drop"] == 100.0 and report["task"]["name"] == "classification" and report["passed"]
    device = runtime.evaluate_bundle(runtime.Bundle(bundle).verify())
    assert device["max_drop"] == 100.0 and device["passed"]
    full = {row["name"]: row["score"] for row in report["artifacts"]}
    assert {row["name"]: row["score"] for row in device["artifacts"]} == full
