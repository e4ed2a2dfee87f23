"""The spine's accuracy floors on real data (issue 2), from the shipped recipes and their default seeds."""

import json

import pytest

FLOORS = {  # recipe -> minimum test accuracy of the original model
    "mnist-lenet5": 0.970,
    "mnist-resnet": 0.980,
    "seqmnist-lstm": 0.950,
    "seqmnist-gru": 0.950,
    "digits-mlp": 0.970,
}


@pytest.mark.integration
@pytest.mark.parametrize("recipe", sorted(FLOORS))
def test_original_accuracy_floor_and_onnx_parity(pipeline_run, recipe):
    run = pipeline_run(recipe)
    report = json.loads((run / "report.json").read_text())
    assert report["original"]["score"] >= FLOORS[recipe], report["original"]
    onnx_row = next(a for a in report["artifacts"] if a["name"] == "onnx-fp32")
    assert onnx_row["backend"] == "onnxruntime"
    assert onnx_row["drop"] <= 0.1
    assert onnx_row["agreement"] >= 0.999
    assert report["dataset"]["test_samples"] >= 360
