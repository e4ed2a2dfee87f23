"""The CLI through typer's CliRunner: exit codes, one-line errors, nothing damaged."""

import json
import shutil

import numpy as np
import onnx
import pytest
import typer
from helpers.recipes import write_recipe
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from edgepipe import __version__
from edgepipe.artifacts import add_artifact, new_manifest, write_manifest
from edgepipe.cli.main import COMMANDS, app

runner = CliRunner()


def test_version_and_help_list_every_command():
    assert runner.invoke(app, ["--version"]).output.strip() == f"edgepipe {__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    stages = {"train", "prune", "quantize", "export", "build", "eval", "bench", "bundle", "infer", "pipeline"}
    assert stages <= set(COMMANDS)  # every stage of the mission has its command
    for name in COMMANDS:
        assert name in result.output
        assert runner.invoke(app, [name, "--help"]).exit_code == 0, name


def test_train_export_eval_through_the_cli(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml")
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", str(recipe), "--out", str(run)]).exit_code == 0
    result = runner.invoke(app, ["export", str(run), "--exporter", "torchscript"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["original"]["score"] > 0.9
    names = [a["name"] for a in report["artifacts"]]
    assert names == ["original", "onnx-fp32"]
    onnx_row = report["artifacts"][1]
    for key in ("name", "backend", "precision", "path", "score", "drop", "agreement", "size_bytes"):
        assert key in onnx_row
    assert onnx_row["backend"] == "onnxruntime" and onnx_row["drop"] <= 0.1
    assert json.loads((run / "report.json").read_text())["recipe"] == "tiny"


def _add_bad_onnx_artifact(run, output_classes=4):
    """A run stage whose ONNX model predicts one constant class: far over any accuracy budget."""
    stage = run / "broken"
    stage.mkdir()
    logits = np.zeros((1, output_classes), np.float32)
    logits[0, 0] = 1.0
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
         helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
         helper.make_node("Mul", ["m1", "zero"], ["z"]),
         helper.make_node("Add", ["z", "bias"], ["logits"])],
        "constant",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 12, 12])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", output_classes])],
        [numpy_helper.from_array(np.array([1], np.int64), "one"),
         numpy_helper.from_array(np.zeros(1, np.float32), "zero"), numpy_helper.from_array(logits, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, stage / "model.onnx")
    manifest = new_manifest("broken", {})
    add_artifact(manifest, stage, "model.onnx", name="constant", fmt="onnx", precision="fp32")
    write_manifest(stage, manifest)


def test_eval_exits_1_when_an_artifact_is_over_budget(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _add_bad_onnx_artifact(run)
    result = runner.invoke(app, ["eval", str(run), "--max-drop", "1.0"])
    assert result.exit_code == 1
    assert "over the 1.0 pts budget: constant" in result.output


@pytest.mark.parametrize("args, message", [
    (["train", "missing.yaml"], "recipe not found"),
    (["export", "no/such/run"], "does not exist"),
    (["export", "README.md"], "README.md: not a checkpoint"),
    (["eval", "no/such/run"], "does not exist"),
    (["pipeline", "missing.yaml"], "recipe not found"),
])
def test_bad_paths_are_one_line_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_recipe_typo_is_one_line_exit_2_and_writes_nothing(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", train={"epohcs": 3})
    result = runner.invoke(app, ["pipeline", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "unknown key 'train.epohcs'" in result.output and "epochs" in result.output
    assert not (tmp_path / "run").exists()


def test_unknown_model_is_exit_2_and_leaves_the_old_run_intact(tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / "train" / "model.pt").read_bytes()
    recipe = write_recipe(tmp_path / "r.yaml", model={"name": "transformer", "params": {}})
    result = runner.invoke(app, ["train", str(recipe), "--out", str(run)])
    assert result.exit_code == 2 and "unknown model 'transformer'" in result.output
    assert (run / "train" / "model.pt").read_bytes() == before


def test_truncated_checkpoint_via_cli(tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    data = (run / "train" / "model.pt").read_bytes()
    (run / "train" / "model.pt").write_bytes(data[:100])
    result = runner.invoke(app, ["export", str(run), "--exporter", "torchscript"])
    assert result.exit_code == 2 and "not a readable edgepipe checkpoint" in result.output


def test_corrupt_onnx_artifact_via_eval(tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "export" / "model.onnx").write_bytes(b"garbage")
    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 2 and "cannot load it as ONNX" in result.output


def test_pipeline_skips_up_to_date_stages(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml")
    run = tmp_path / "run"
    assert runner.invoke(app, ["pipeline", str(recipe), "--out", str(run)]).exit_code == 0
    stamps = {p: p.stat().st_mtime_ns for p in run.glob("*/model.*")}
    result = runner.invoke(app, ["pipeline", str(recipe), "--out", str(run)])
    assert result.exit_code == 0
    assert "train: up to date" in result.output and "export: up to date" in result.output
    assert stamps == {p: p.stat().st_mtime_ns for p in run.glob("*/model.*")}
    # Changing the export section redoes export only.
    write_recipe(tmp_path / "r.yaml", export={"exporter": "torchscript", "opset": 17})
    result = runner.invoke(app, ["pipeline", str(recipe), "--out", str(run)])
    assert "train: up to date" in result.output and "export: up to date" not in result.output


def test_every_stage_option_defaults_to_its_config_models_default():
    # One place for defaults: edgepipe.defaults, read by recipe.py's models and by the commands' options.
    import inspect

    from edgepipe.cli import bench, build, export, prune, quantize
    from edgepipe.recipe import BenchConfig, BuildConfig, ExportConfig, PruneConfig, QuantizeConfig

    options = {  # option -> (model, field) where the names differ; the rest are the field names
        bench.command: (BenchConfig, {"batch": "batch_sizes"}),
        build.command: (BuildConfig, {}),  # generated from the settings table: the field names
        export.command: (ExportConfig, {}),
        prune.command: (PruneConfig, {"ignore": None, "target_latency": "target_latency_ms", "batch": "latency_batch",
                                      "runtime": "latency_runtime"}),
        quantize.command: (QuantizeConfig, {"calib": "calibration", "keep_float": None})}  # None: a repeatable
    # list option defaults to None in typer, meaning "the config's empty list"
    checked = 0
    for command, (model, renamed) in options.items():
        for name, parameter in inspect.signature(command).parameters.items():
            field = renamed.get(name, name)
            if field not in model.model_fields or parameter.default is inspect.Parameter.empty:
                continue
            expected = model.model_fields[field].get_default(call_default_factory=True)
            given = parameter.default
            if field in ("batch_sizes", "batch"):
                given = [int(part) for part in str(given).replace(":", ",").split(",")]
                expected = list(expected)
            assert given == expected, f"{command.__module__} --{name}: {given!r} != {model.__name__}.{field}"
            checked += 1
    assert checked >= 30


def test_the_cli_starts_without_pydantic_or_torch():
    import subprocess
    import sys

    code = "import sys, edgepipe.cli.main; print(sorted({'pydantic', 'torch', 'onnx'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_usage_errors_are_caught_without_typers_private_click():
    """The one-line usage errors catch the click exceptions typer really raises, found from its public
    BadParameter: a bad option value is one line and exit code 2."""
    from edgepipe.cli.main import click_exceptions

    usage_error, click_exception = click_exceptions()
    assert issubclass(typer.BadParameter, usage_error) and issubclass(usage_error, click_exception)
    result = CliRunner().invoke(app, ["build", "run", "--opt-level", "five"])
    assert result.exit_code == 2 and "Traceback" not in result.output
