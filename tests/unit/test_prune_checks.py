"""A pipeline whose prune request cannot be met is refused before training, in one line, with nothing trained."""

from __future__ import annotations

import pytest
from helpers.recipes import write_recipe
from typer.testing import CliRunner

from edgepipe.cli.main import app

RESNET = {"name": "resnet", "params": {"width": 8, "blocks": [1, 1]}}  # stages.0 removable, stages.1 projection


def _refused(tmp_path, model, prune) -> str:
    recipe = write_recipe(tmp_path / "r.yaml", model=model, prune={"finetune_epochs": 0, **prune})
    result = CliRunner().invoke(app, ["pipeline", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert not (tmp_path / "run" / "train").exists()  # refused before any training
    return lines[0]


def test_more_blocks_than_the_model_can_lose(tmp_path):
    line = _refused(tmp_path, RESNET, {"method": "channel", "remove_blocks": 2})
    assert "remove_blocks 2" in line and "only 1 removable block (stages.0)" in line, line


def test_a_latency_target_on_a_runtime_that_is_not_installed(tmp_path, monkeypatch):
    from edgepipe.pruning import layer_latency

    monkeypatch.setattr(layer_latency, "runtime_problem", lambda runtime: f"{runtime} is not installed here")
    line = _refused(tmp_path, RESNET, {"method": "channel", "target_latency_ms": 1.0, "latency_runtime": "openvino"})
    assert "openvino is not installed here" in line, line


def test_a_tensorrt_latency_target_without_a_device_profile(tmp_path):
    line = _refused(tmp_path, RESNET, {"method": "channel", "target_latency_ms": 1.0, "latency_runtime": "tensorrt"})
    assert "--exportProfile=profile.json" in line and "--latency-profile profile.json" in line, line


@pytest.mark.parametrize("prune", [{"method": "2:4", "ignore_layers": ["stem.0", "stages.0.conv1", "stages.0.conv2",
                                                                      "stages.1.conv1", "stages.1.conv2",
                                                                      "stages.1.shortcut.0"]}])
def test_2_4_with_every_eligible_layer_ignored(tmp_path, prune):
    line = _refused(tmp_path, {**RESNET, "params": {"width": 16, "blocks": [1, 1]}}, prune)
    assert "2:4" in line and "no eligible layer" in line, line
