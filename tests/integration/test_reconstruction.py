"""The reconstruction task end to end: a convolutional autoencoder on scikit-learn's real 8x8 digits, judged on
PSNR at every stage (train, export, quantize with its fallback, eval's gate, the bundle, the device runtime)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from helpers.recipes import REPO

from edgepipe.artifacts import read_manifest
from edgepipe.stages.pipeline import run_pipeline

pytestmark = pytest.mark.integration

RECIPE = {
    "name": "digits-autoencoder", "task": "reconstruction", "target": "jetson-orin-nano",
    "model": {"name": "conv-autoencoder", "params": {"widths": [16, 32], "code_channels": 8}},
    "dataset": {"name": "digits"},
    "train": {"optimizer": "adam", "lr": 0.005, "epochs": 60, "batch_size": 32},  # 20.8 dB test PSNR, ~25 s
    "eval": {"max_drop": 1.0},
    "quantize": {"calibration": str(REPO / "calibration" / "mnist-train-512.yaml"), "cpu_speed_fallback": False},
}


@pytest.fixture(scope="module")
def autoencoder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reconstruction")
    recipe = root / "digits-autoencoder.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    run_pipeline(recipe, root / "run")
    return root / "run"


def test_psnr_is_the_metric_everywhere_and_int8_stays_within_a_db(autoencoder_run):
    train = read_manifest(autoencoder_run / "train")
    assert train.model["task"] == "reconstruction" and train.metrics["metric"] == "psnr_db"
    report = json.loads((autoencoder_run / "report.json").read_text())
    assert report["task"] == {"name": "reconstruction", "metric": "psnr_db", "unit": "dB", "metric_label": "PSNR",
                              "agreement": "PSNR vs the reference's output"}
    rows = {row["name"]: row for row in report["artifacts"]}
    # a real reconstruction: far above answering every digit with the mean image (11.4 dB on this test split)
    assert rows["original"]["score"] >= 19.5, rows["original"]
    assert "degenerate" not in read_manifest(autoencoder_run / "export").metrics
    assert rows["onnx-fp32"]["agreement"] >= 60.0  # PSNR of the export's output vs PyTorch's
    assert abs(rows["int8-cpu"]["drop"]) <= 1.0 and rows["int8-cpu"]["within_budget"], rows["int8-cpu"]  # the floor
    assert abs(rows["fp16"]["drop"]) <= 0.1, rows["fp16"]
    assert rows["int8-cpu"]["metrics"]["mse"] > 0 and report["passed"]


def test_the_device_runtime_gives_the_same_verdict_on_the_bundle(autoencoder_run, capsys):
    from edgepipe.device import runtime
    from edgepipe.stages.evaluate import evaluate

    bundle = autoencoder_run / "bundle-jetson-orin-nano"
    device = runtime.evaluate_bundle(runtime.Bundle(bundle).verify())
    full = {row["name"]: row for row in evaluate(bundle)["artifacts"]}
    assert device["task"]["unit"] == "dB"
    for row in device["artifacts"]:
        assert row["score"] == pytest.approx(full[row["name"]]["score"], abs=1e-9), row["name"]
        assert row["drop"] == pytest.approx(full[row["name"]]["drop"], abs=1e-4), row["name"]
    with np.load(bundle / "reference.npz", allow_pickle=False) as data:
        assert data["outputs"].shape == data["x"].shape  # the original's reconstructions are the reference
