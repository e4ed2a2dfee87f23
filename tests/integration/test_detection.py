"""Detection end to end on mnist-canvas (real MNIST digits on cluttered canvases), shrunk to fit CI: train, export
with the decode inside the graph, prune, quantize (decode and output convs float), eval on mAP, the bundle and the
device runtime's numpy mAP. The full recipe and its floors: recipes/mnist-canvas-centernet.yaml, README."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import yaml
from helpers.recipes import REPO

from edgepipe.artifacts import read_manifest
from edgepipe.check import check_onnx, has_errors
from edgepipe.device.scoring import DETECTION_OUTPUTS
from edgepipe.stages.pipeline import run_pipeline

pytestmark = pytest.mark.integration

RECIPE = {
    "name": "canvas-small", "task": "detection", "target": "jetson-orin-nano",
    "model": {"name": "centernet", "params": {"width": 12}},
    "dataset": {"name": "mnist-canvas", "canvases": 1500, "image_size": [64, 64]},
    "train": {"optimizer": "adamw", "lr": 0.003, "schedule": "onecycle", "epochs": 10, "batch_size": 32},
    "export": {"opset": 17},
    "eval": {"max_drop": 3.0},  # mAP@0.5 points: 300 test canvases resolve less than the full recipe's 1,000
    "prune": {"method": "channel", "target_macs": 0.5, "round_to": 4, "importance": "taylor", "finetune_epochs": 4,
              "finetune_lr": 0.003},
    "quantize": {"method": "minmax", "calibration": str(REPO / "calibration" / "train-256.yaml"),
                 "reduce_range": True, "cpu_speed_fallback": False},
    "bench": {"batch_sizes": [1], "seconds": 0.2},
}


@pytest.fixture(scope="module")
def detection_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("detection")
    recipe = root / "canvas-small.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    run_pipeline(recipe, root / "run")
    return root / "run"


def test_map_is_the_metric_and_every_artifact_keeps_it(detection_run):
    report = json.loads((detection_run / "report.json").read_text())
    assert report["task"]["name"] == "detection" and report["task"]["unit"] == "pts"
    rows = {row["name"]: row for row in report["artifacts"]}
    assert rows["original"]["score"] >= 0.7, rows["original"]["score"]  # a detector, not a guess
    coco = rows["original"]["metrics"]["coco"]
    assert coco["map50"] == pytest.approx(rows["original"]["score"], abs=1e-4)  # numpy mAP == pycocotools'
    assert rows["onnx-fp32"]["agreement"] >= 0.999 and rows["onnx-fp32"]["drop"] == pytest.approx(0, abs=1e-6)
    for name in ("int8-cpu", "int8-trt", "fp16"):
        assert rows[name]["agreement_with_parent"] >= 0.9, (name, rows[name]["agreement_with_parent"])
        assert rows[name]["drop_ci95"] >= 0
    assert abs(rows["fp16"]["score"] - rows["pruned-onnx-fp32"]["score"]) <= 0.002
    prune = read_manifest(detection_run / "prune")
    assert prune.metrics["macs"]["ratio"] >= 1.9


def test_the_graph_ends_in_its_decode_and_int8_leaves_it_float(detection_run):
    fp32 = onnx.load(str(detection_run / "export" / "model.onnx"))
    assert [output.name for output in fp32.graph.output] == list(DETECTION_OUTPUTS)
    assert not {"NonMaxSuppression", "EfficientNMS_TRT"} & {node.op_type for node in fp32.graph.node}
    for name in ("model.int8.cpu.onnx", "model.int8.trt.onnx"):
        graph = onnx.load(str(detection_run / "quantize" / name)).graph
        producer = {out: node for node in graph.node for out in node.output}
        topk = next(node for node in graph.node if node.op_type == "TopK")
        upstream, seen = [topk.input[0]], set()
        while upstream:  # nothing between the head's maps and TopK is quantized
            tensor = upstream.pop()
            node = producer.get(tensor)
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            assert node.op_type not in ("QuantizeLinear", "DequantizeLinear"), (name, node.name)
            if node.op_type != "Conv":
                upstream += list(node.input)


@pytest.mark.parametrize("tensorrt", ["10.3", "8.5"])
def test_the_exported_detector_passes_preflight_without_plugins(detection_run, tensorrt):
    findings = check_onnx(detection_run / "export" / "model.onnx", "jetson-orin-nano", tensorrt=tensorrt)
    assert not has_errors(findings), [f.message for f in findings if f.severity == "error"]
    assert not [f for f in findings if f.rule == "opset"]  # opset 17: what TensorRT 8.5's parser documents


def test_the_device_runtime_gives_the_same_verdict_on_the_bundle(detection_run):
    from edgepipe.device import runtime
    from edgepipe.stages.evaluate import evaluate

    bundle = detection_run / "bundle-jetson-orin-nano"
    device = runtime.evaluate_bundle(runtime.Bundle(bundle).verify())
    full = {row["name"]: row for row in evaluate(bundle)["artifacts"]}
    assert device["task"] == {"name": "detection", "metric": "map50", "unit": "pts"}
    for row in device["artifacts"]:
        assert row["score"] == pytest.approx(full[row["name"]]["score"], abs=1e-9), row["name"]
    with np.load(bundle / "reference.npz", allow_pickle=False) as data:
        assert data["outputs"].shape[1:] == (100, 6) and data["y"].shape[2] == 5
