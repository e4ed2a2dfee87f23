"""Two writers of one run, and the same recipe twice: what a shared workstation or a CI cache does."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from helpers.runs import edgepipe_process, snapshot, tiny_pipeline_recipe

from edgepipe.artifacts import read_manifest


def test_two_pipelines_racing_into_one_out_the_second_is_refused_and_the_run_is_not_a_mix(tmp_path: Path):
    recipe_a = tiny_pipeline_recipe(tmp_path / "a.yaml", name="recipe-a")
    recipe_b = tiny_pipeline_recipe(tmp_path / "b.yaml", name="recipe-b",
                                    train={"epochs": 3, "batch_size": 32, "lr": 0.01, "seed": 7})
    run = tmp_path / "run"
    first = edgepipe_process("pipeline", str(recipe_a), "--out", str(run))
    while not (run / ".edgepipe.lock").is_file() and first.poll() is None:  # A holds the run
        time.sleep(0.01)
    second = edgepipe_process("pipeline", str(recipe_b), "--out", str(run))
    _, second_err = second.communicate(timeout=300)
    _, first_err = first.communicate(timeout=600)

    assert first.returncode == 0, first_err
    assert second.returncode == 2
    lines = [line for line in second_err.splitlines() if line.strip()]
    assert len(lines) == 1 and "being written by another edgepipe process (pid" in lines[0], second_err
    # Everything in the run is A's: its recipe copy, its training config, its report.
    assert yaml.safe_load((run / "recipe.yaml").read_text())["name"] == "recipe-a"
    assert read_manifest(run / "train").config["train"]["seed"] == 0
    assert json.loads((run / "report.json").read_text())["recipe"] == "recipe-a"


def test_same_recipe_and_seed_twice_gives_identical_accuracies_and_onnx_bytes(tmp_path: Path):
    recipe = tiny_pipeline_recipe(tmp_path / "r.yaml")
    runs = [tmp_path / "one", tmp_path / "two"]
    for run in runs:
        process = edgepipe_process("pipeline", str(recipe), "--out", str(run))
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    reports = [json.loads((run / "report.json").read_text()) for run in runs]
    accuracies = [[(row["name"], row["score"]) for row in report["artifacts"]] for report in reports]
    assert accuracies[0] == accuracies[1]
    hashes = [snapshot(run) for run in runs]
    for name in ("export/model.onnx", "quantize/model.int8.cpu.onnx", "quantize/model.int8.trt.onnx",
                 "quantize/model.fp16.onnx", "quantize/trt.calib.cache", "quantize/calibration.ranges.json"):
        assert hashes[0][name] == hashes[1][name], name
