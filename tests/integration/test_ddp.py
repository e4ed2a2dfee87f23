"""Distributed data-parallel training: 2 CPU processes with the gloo backend, launched by torchrun."""

import os
import subprocess
import sys

import pytest
from helpers.recipes import write_recipe

from edgepipe.artifacts import read_manifest
from edgepipe.checkpoint import load_model
from edgepipe.rundir import LOCK


@pytest.mark.integration
def test_torchrun_two_cpu_processes_train_one_model(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", train={"epochs": 3, "batch_size": 16, "device": "cpu"})
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGEPIPE_NO_PROGRESS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "edgepipe", "train", str(recipe), "--out", str(run)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    manifest = read_manifest(run / "train")
    assert manifest.world_size == 2
    assert manifest.metrics["val"] >= 0.9
    assert len(manifest.metrics["history"]) == 3
    model, _ = load_model(run / "train")  # rank 0 wrote one complete, loadable artifact
    assert [p.name for p in run.iterdir() if p.name != LOCK] == ["train"]  # and nothing else (no partial dirs)
