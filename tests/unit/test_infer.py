"""`edgepipe infer` on real image files: recorded preprocessing, every kind of MODEL, backends, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from helpers.recipes import write_recipe
from PIL import Image
from typer.testing import CliRunner

from edgepipe.cli.main import user_errors


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """An MLP on scikit-learn's real 8x8 digits (an image dataset: preprocessing is recorded), a second to train."""
    from edgepipe.recipe import load_recipe
    from edgepipe.stages.export import export
    from edgepipe.stages.train import train

    root = tmp_path_factory.mktemp("digits-run")
    recipe = load_recipe(write_recipe(root / "digits.yaml", dataset={"name": "digits"},
                                      train={"epochs": 8, "lr": 0.01}))
    run = root / "run"
    train(recipe, run / "train")
    export(run / "train", run / "export", recipe.export)
    return run


@pytest.fixture(scope="module")
def digit_images(digits_run, tmp_path_factory) -> tuple[Path, list[int]]:
    """Held-out test digits written as 8-bit PNGs (the normalization undone), named by their label."""
    from edgepipe.artifacts import read_manifest
    from edgepipe.data import load_stage_dataset
    from edgepipe.data.digits import DIGITS_MEAN, DIGITS_STD

    test = load_stage_dataset(read_manifest(digits_run / "train")).test
    folder = tmp_path_factory.mktemp("digit-pngs")
    labels = []
    for index in range(40):
        pixels = np.clip(np.round((test.x[index, 0] * DIGITS_STD + DIGITS_MEAN) * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")
        labels.append(int(test.y[index]))
    return folder, labels


def _app() -> typer.Typer:
    from edgepipe.cli.infer import command

    app = typer.Typer()
    app.command("infer")(user_errors(command))
    app.command("noop")(lambda: None)
    return app


def _run(*args: str):
    return CliRunner().invoke(_app(), ["infer", *map(str, args)])


def _predicted(result) -> list[int]:
    return [row["top"][0]["index"] for row in result["predictions"]]


def test_run_dir_runs_the_onnx_on_real_pngs_and_gets_most_right(digits_run, digit_images):
    folder, labels = digit_images
    result = _run(digits_run, folder, "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["backend"] == "onnxruntime" and report["artifact"] == "onnx-fp32"
    assert report["path"] == str(digits_run / "export" / "model.onnx")
    assert [Path(p["file"]).name for p in report["predictions"]] == [f"{i:03d}.png" for i in range(40)]
    assert np.mean(np.array(_predicted(report)) == np.array(labels)) >= 0.8
    first = report["predictions"][0]["top"]
    assert len(first) == 3 and first[0]["label"] == str(first[0]["index"])
    assert sum(t["probability"] for t in first) <= 1.0 + 1e-9 and first[0]["probability"] >= first[1]["probability"]


def test_every_kind_of_model_argument_gives_the_same_predictions(digits_run, digit_images):
    folder, _ = digit_images
    images = sorted(folder.glob("*.png"))[:10]
    outcomes = {}
    for model in (digits_run, digits_run / "export", digits_run / "export" / "model.onnx",
                  digits_run / "train", digits_run / "train" / "model.pt"):
        result = _run(model, *images, "--json")
        assert result.exit_code == 0, (model, result.output)
        report = json.loads(result.output)
        outcomes[model.name] = (report["backend"], _predicted(report))
    assert outcomes["model.pt"][0] == outcomes["train"][0] == "torch"
    assert outcomes["model.onnx"][0] == outcomes["export"][0] == outcomes["run"][0] == "onnxruntime"
    assert len({tuple(predicted) for _, predicted in outcomes.values()}) == 1


def test_table_output_names_the_backend_and_labels(digits_run, digit_images):
    folder, labels = digit_images
    result = _run(digits_run / "export" / "model.onnx", folder / "000.png")
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.output and "000.png" in result.output and "prediction" in result.output


def _fake_engine_stage(run: Path) -> Path:
    from edgepipe.artifacts import add_artifact, new_manifest, write_manifest

    stage = run / "build-fp16"
    stage.mkdir()
    (stage / "model.fp16.engine").write_bytes(b"not a real engine")
    manifest = new_manifest("build", {"onnx": str(run / "export" / "model.onnx")}, {})
    add_artifact(manifest, stage, "model.fp16.engine", name="tensorrt-fp16", fmt="engine", precision="fp16")
    write_manifest(stage, manifest)
    return stage / "model.fp16.engine"


def test_an_engine_without_tensorrt_says_so_and_runs_its_onnx(digits_run, digit_images, tmp_path):
    folder, _ = digit_images
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    engine = _fake_engine_stage(run)
    for model in (engine, run):
        result = _run(model, folder / "001.png", "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["backend"] == "onnxruntime" and report["path"] == str(run / "export" / "model.onnx")
        assert report["note"].startswith("TensorRT not available here")


def test_an_engine_runs_on_tensorrt_when_it_is_available(digits_run, digit_images, tmp_path, monkeypatch):
    from fakes.tensorrt_fake import install

    from edgepipe.recipe import BuildConfig
    from edgepipe.stages.build import build

    folder, _ = digit_images
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    install(monkeypatch, "10.3.0")
    stage = build(run, None, BuildConfig(precision="fp16", batch=(1, 8, 16)))
    for model in (stage / "model.fp16.engine", run):
        report = json.loads(_run(model, folder / "002.png", "--json").output)
        assert report["backend"] == "tensorrt" and report["note"] is None
        assert report["path"] == str(stage / "model.fp16.engine")
    # the fake engine's logits grow with the class index for a positive input sum: class 9 wins
    assert report["predictions"][0]["top"][0]["index"] == 9


def test_bad_input_is_one_line_exit_2(digits_run, digit_images, tiny_run, tmp_path):
    folder, _ = digit_images
    broken = tmp_path / "broken.png"
    broken.write_text("this is not a PNG")
    result = _run(digits_run, folder / "000.png", broken)
    assert result.exit_code == 2 and f"{broken}: not a readable image" in result.output
    assert len(result.output.strip().splitlines()) == 1
    missing = _run(digits_run, tmp_path / "nope.png")
    assert missing.exit_code == 2 and "no such image file or folder" in missing.output
    (tmp_path / "empty").mkdir()
    empty = _run(digits_run, tmp_path / "empty")
    assert empty.exit_code == 2 and "no image files in this folder" in empty.output
    not_images = _run(tiny_run, folder / "000.png")
    assert not_images.exit_code == 2 and "not images" in not_images.output
    unknown = _run(digits_run, folder / "000.png", "--artifact", "int9")
    assert unknown.exit_code == 2 and "its artifacts: original, onnx-fp32" in unknown.output
    stray = tmp_path / "model.onnx"
    shutil.copyfile(digits_run / "export" / "model.onnx", stray)
    lonely = _run(stray, folder / "000.png")
    assert lonely.exit_code == 2 and "no preprocessing recorded" in lonely.output


def test_a_bundle_runs_without_its_run_dir_and_names_a_missing_file(digits_run, digit_images, tmp_path):
    from edgepipe.stages.bundle import make_bundle

    folder, labels = digit_images
    bundle = make_bundle(digits_run, "jetson-orin-nano", tmp_path / "bundle", samples=20)
    report = json.loads(_run(bundle, folder, "--json").output)
    assert report["path"] == str(bundle / "export" / "model.onnx")
    assert np.mean(np.array(_predicted(report)) == np.array(labels)) >= 0.8
    (bundle / "labels.txt").unlink()
    result = _run(bundle, folder)
    assert result.exit_code == 2 and "missing labels.txt" in result.output
