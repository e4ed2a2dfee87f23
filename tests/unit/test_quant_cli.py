"""`edgepipe quantize` through typer's CliRunner: the table, and bad input as one line + exit 2, nothing damaged."""

from __future__ import annotations

import os

import numpy as np
import pytest
import typer
from PIL import Image
from test_quant import export_onnx, make_export_dir, tiny_net, write_calibration
from typer.testing import CliRunner

from edgepipe.artifacts import new_manifest, write_manifest
from edgepipe.cli.main import user_errors
from edgepipe.cli.quantize import command

os.environ.setdefault("EDGEPIPE_NO_PROGRESS", "1")


@pytest.fixture(scope="module")
def cli():
    app = typer.Typer()
    app.command()(user_errors(command))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = make_export_dir(tmp_path_factory.mktemp("cli"))
    write_calibration(root / "calib.yaml")
    return root


def _snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_quantize_prints_the_artifact_table(cli, run):
    result = cli(run, "--calib", run / "calib.yaml", "--method", "percentile", "--percentile", "99.9")
    assert result.exit_code == 0, result.output
    for text in ("int8-cpu", "int8-trt", "fp16", "speed ×", "CPU VNNI"):
        assert text in result.output
    assert (run / "quantize" / "trt.calib.cache").is_file()


def _images(folder, count, size):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8), mode="L").save(folder / f"{index}.png")
    return folder


def test_image_folder_calibration(cli, run, tmp_path):
    folder = _images(tmp_path / "images", 16, (12, 12))
    result = cli(run, "--calib", folder, "--out", tmp_path / "q")
    assert result.exit_code == 0, result.output
    import json

    calibration = json.loads((tmp_path / "q" / "manifest.json").read_text())["calibration"]
    assert calibration["images"] == 16 and calibration["name"] == "images"


@pytest.mark.parametrize("case", ["empty-folder", "not-an-image", "test-split", "nan-data", "bad-method",
                                  "missing-calibration", "distill-without-qat"])
def test_bad_input_is_one_line_exit_2_and_damages_nothing(cli, run, tmp_path, monkeypatch, case):
    calib = run / "calib.yaml"
    extra = []
    if case == "empty-folder":
        (tmp_path / "empty").mkdir()
        calib, expected = tmp_path / "empty", "holds no images"
    elif case == "not-an-image":  # any size is fine (the eval view resizes it); a text file named .png is not
        calib = _images(tmp_path / "imgs", 3, (20, 20))
        (calib / "notes.png").write_text("not pixels")
        expected = "notes.png: not a readable image"
    elif case == "test-split":
        calib, expected = write_calibration(tmp_path / "t.yaml", split="test"), "never on test"
    elif case == "nan-data":
        import edgepipe.stages.quantize as stage

        real = stage.QuantizeSource.dataset

        def poisoned(self):
            dataset = real(self)
            dataset.train.x[5, 0, 0, 0] = np.inf
            return dataset

        monkeypatch.setattr(stage.QuantizeSource, "dataset", poisoned)
        expected = "holds NaN or Inf"
    elif case == "distill-without-qat":
        extra, expected = ["--qat-distill", "on"], "--qat-distill: distillation happens during QAT, and qat is off"
    elif case == "bad-method":
        extra, expected = ["--method", "kl"], "--method: Input should be 'minmax', 'entropy' or 'percentile' (got 'kl')"
    else:
        calib, expected = "calibration/does-not-exist.yaml", "not found"
    out = tmp_path / "quantize"
    write_manifest(out, new_manifest("quantize", {}))  # a previous quantize result of ours
    (out / "keep.txt").write_text("previous result")
    before = _snapshot(run)
    result = cli(run, "--calib", calib, "--out", out, *extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output
    assert (out / "keep.txt").read_text() == "previous result"
    assert sorted(os.listdir(out)) == ["keep.txt", "manifest.json"]
    assert _snapshot(run) == before


def test_onnx_without_batch_axis_is_refused(cli, tmp_path):
    model = export_onnx(tiny_net().eval(), tmp_path / "static.onnx", dynamic=False)
    result = cli(model, "--out", tmp_path / "q")
    assert result.exit_code == 2
    assert "no dynamic batch axis" in result.output and not (tmp_path / "q").exists()


def test_a_speed_runtime_that_is_not_installed_or_unknown_is_one_line_and_exit_2(cli, run, monkeypatch):
    from edgepipe.runners import select

    monkeypatch.setattr(select, "installed_cpu_runtimes", lambda: ["onnxruntime"])
    before = _snapshot(run)
    result = cli(run, "--calib", run / "calib.yaml", "--speed-runtime", "openvino")
    assert result.exit_code == 2 and "--speed-runtime openvino: not installed here" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = cli(run, "--calib", run / "calib.yaml", "--speed-runtime", "tvm")
    assert result.exit_code == 2 and "speed-runtime" in result.output and len(result.output.strip().splitlines()) == 1
    assert _snapshot(run) == before


def test_nodes_kept_in_float_by_the_user_are_said_as_such(cli, run, tmp_path):
    from edgepipe.quant.tracks import graph_nodes

    first_conv = next(name for name, op, *_ in graph_nodes(run / "export" / "model.onnx") if op == "Conv")
    result = cli(run, "--calib", run / "calib.yaml", "--keep-float", first_conv, "--no-cpu-speed-fallback",
                 "--out", tmp_path / "q")
    assert result.exit_code == 0, result.output
    assert f"kept in float as asked (--keep-float): {first_conv}" in result.output
    result = cli(run, "--calib", run / "calib.yaml", "--keep-float", "nope", "--out", tmp_path / "q2")
    assert result.exit_code == 2 and "keep_float 'nope': no node of that name in model.onnx" in result.output
    assert not (tmp_path / "q2").exists()
