"""run.py: the names of a run, the one resolver; typed manifests that still read what earlier versions wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgepipe.artifacts import MANIFEST, Manifest, new_manifest, read_manifest, write_manifest
from edgepipe.errors import EdgepipeError
from edgepipe.run import EXPORT, EXPORT_PRUNED, INT8_CPU_ONNX, QUANTIZE, TRAIN, RunLayout, resolve, stage_dir

# Written by the pipeline before run.py and typed manifests existed (tests/unit/data/README is the recipe).
BEFORE = Path(__file__).parent / "data" / "manifests-before-run-layout"


def test_stage_dir_accepts_run_or_stage(tmp_path):
    write_manifest(tmp_path / "train", new_manifest("train", {}))
    assert stage_dir(tmp_path, "train") == tmp_path / "train"
    assert stage_dir(tmp_path / "train", "train") == tmp_path / "train"
    with pytest.raises(EdgepipeError, match="no 'export' stage"):
        stage_dir(tmp_path, "export")


@pytest.mark.parametrize("stage", sorted(str(p.parent.relative_to(BEFORE)) for p in BEFORE.rglob(MANIFEST)))
def test_manifests_written_before_typed_manifests_still_read_and_write_back_unchanged(stage):
    raw = json.loads((BEFORE / stage / MANIFEST).read_text())
    manifest = read_manifest(BEFORE / stage)
    assert manifest.stage == raw["stage"] and len(manifest.artifacts) == len(raw["artifacts"])
    assert manifest.to_json() == raw  # nothing lost, nothing invented: stage-specific keys survive as extras


def test_typed_fields_of_an_old_run():
    quantize = read_manifest(BEFORE / QUANTIZE)
    cpu = quantize.find_artifact(file=INT8_CPU_ONNX)
    assert cpu is not None and cpu.precision == "int8" and cpu.model_extra["track"] == "cpu"
    assert quantize.extra("calibration_cache")["file"] == "trt.calib.cache"
    assert quantize.dataset.preprocessing["kind"] == "image" and quantize.dataset.labels[:2] == ["0", "1"]
    assert read_manifest(BEFORE / TRAIN).find_artifact(name="original").format == "torch"
    bundle = read_manifest(BEFORE / "bundle-jetson-orin-nano")
    assert bundle.files and all(entry.sha256 for entry in bundle.files) and bundle.target["name"] == "jetson-orin-nano"


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(BEFORE, run)
    return run


def test_resolve_names_what_the_user_pointed_at(old_run):
    assert resolve(old_run).kind == "run"
    assert resolve(old_run / EXPORT).kind == "stage" and resolve(old_run / EXPORT).stage == EXPORT
    assert resolve(old_run / "bundle-jetson-orin-nano").kind == "bundle"
    (old_run / EXPORT / "model.onnx").write_bytes(b"")
    file = resolve(old_run / EXPORT / "model.onnx")
    assert file.kind == "file" and file.manifest.stage == EXPORT and file.run.root == old_run
    assert resolve(old_run).model_stage() == old_run / "prune"  # the pruned model is the one to carry on with
    assert resolve(old_run / TRAIN).model_stage() == old_run / TRAIN


@pytest.mark.parametrize("path, message", [
    ("missing", "does not exist"), ("notes.txt", "not a model file"), ("empty-dir", "not a run directory")])
def test_resolve_refuses_in_one_line(tmp_path, path, message):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(EdgepipeError, match=message):
        resolve(tmp_path / path)


def test_layout_lists_exports_deployable_first_and_artifacts_original_first(old_run):
    layout = RunLayout(old_run)
    assert layout.exports() == [old_run / EXPORT_PRUNED, old_run / EXPORT]
    artifacts = layout.artifacts()
    assert artifacts[0][1].name == "original"
    assert {entry.name for _, entry in artifacts} >= {"pruned", "onnx-fp32", "pruned-onnx-fp32", "int8-cpu"}


def test_a_damaged_artifact_entry_is_one_line_naming_it(tmp_path):
    raw = new_manifest("export", {}).to_json()
    raw["artifacts"] = [{"name": "x", "file": "model.onnx", "format": "onnx", "sha256": 5}]
    (tmp_path / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(EdgepipeError, match=r"'artifacts\[0\].sha256' must be a string"):
        read_manifest(tmp_path)


def test_new_keys_are_typed_on_assignment():
    manifest = new_manifest("train", {})
    manifest.dataset = {"config": {"name": "digits"}, "fingerprint": "f", "labels": ["a"], "preprocessing": {}}
    assert manifest.dataset.labels == ["a"]
    manifest.device = "cpu"  # a stage's own key: kept as an extra
    assert Manifest.model_validate(manifest.to_json()).extra("device") == "cpu"


def test_a_stage_given_as_dot_still_knows_its_run(old_run, monkeypatch):
    from edgepipe.run import export_dir_for

    monkeypatch.chdir(old_run / "prune")
    assert resolve(Path(".")).run.root == old_run
    assert export_dir_for(Path(".")) == old_run / EXPORT_PRUNED
