"""Quantize a LeNet-5 trained briefly on real MNIST (mnist5k): floors that hold for a small model on this CPU.

The throughput floor (INT8 >= 2.5x FP32) is a ResNet-class claim and is measured by the command in the
quantize report, not asserted here: LeNet-5 at batch 64 is too small for INT8 kernels to win on onnxruntime.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgepipe.quant.tracks import qdq_parameters
from edgepipe.recipe import QuantizeConfig, parse_recipe
from edgepipe.trt import calib_cache as trt_cache

os.environ.setdefault("EDGEPIPE_NO_PROGRESS", "1")

RECIPE = {"name": "lenet5-quantize-test", "model": {"name": "lenet5"},
          "dataset": {"name": "mnist5k", "split_seed": 0},
          "train": {"optimizer": "adam", "lr": 0.002, "epochs": 4, "batch_size": 64, "seed": 0},
          "eval": {"max_accuracy_drop": 0.5}}


@pytest.fixture(scope="module")
def quantized_run(tmp_path_factory):
    from edgepipe.stages.export import export
    from edgepipe.stages.quantize import quantize
    from edgepipe.stages.train import train

    run = tmp_path_factory.mktemp("lenet5")
    recipe = parse_recipe(RECIPE)
    train(recipe, run / "train")
    export(run / "train", run / "export", recipe.export)
    out = quantize(run, run / "quantize", QuantizeConfig(qat=True, qat_epochs=1, max_drop=0.3))
    return run, out, json.loads((out / "manifest.json").read_text())


@pytest.mark.integration
def test_int8_floors_on_the_test_split(quantized_run):
    _, out, manifest = quantized_run
    rows = {row["name"]: row for row in manifest["metrics"]["artifacts"]}
    fallback = manifest["metrics"]["fallback"]
    assert fallback["val_drop_after" if fallback["needed"] else "val_drop"] <= 0.3  # the budget, on val
    for name in ("int8-cpu", "int8-trt"):
        assert rows[name]["drop_val"] <= 0.3, rows[name]
        # Test is reported, not optimized for: a 4-epoch model on 1,000 test digits (1 digit = 0.1 pt) gets slack;
        # the 0.3-pt floor on the fully trained recipes is measured by the command in the report.
        assert rows[name]["drop"] <= 0.6, rows[name]
    # Both graphs are fully int8 unless the accuracy fallback kept layers in float (both tracks, named in the
    # manifest); the CPU graph also when the speed fallback found layers faster in float on this CPU.
    accuracy_float = fallback.get("excluded") or []
    if accuracy_float:
        assert rows["int8-trt"]["size_ratio"] < 1.0, rows["int8-trt"]
    else:
        assert rows["int8-trt"]["size_ratio"] <= 0.3, rows["int8-trt"]
    kept = manifest["metrics"]["cpu_speed_fallback"]["kept_float"]
    if kept or accuracy_float:
        assert rows["int8-cpu"]["size_ratio"] < 1.0, rows["int8-cpu"]
    else:
        assert rows["int8-cpu"]["size_ratio"] <= 0.3, rows["int8-cpu"]
    assert rows["fp16"]["drop"] <= 0.1
    assert all("speed_ratio" in row for row in rows.values())
    assert manifest["metrics"]["cpu"]["known"] in (True, False)
    assert manifest["calibration"]["split"] == "train" and manifest["calibration"]["samples"] == 512


@pytest.mark.integration
def test_trt_graph_and_cache_agree(quantized_run):
    _, out, manifest = quantized_run
    for entry in qdq_parameters(out / "model.int8.trt.onnx"):
        assert (np.asarray(entry["scale"]) > 0).all() and not np.any(entry["zero_point"])
    header, scales = trt_cache.parse_cache(out / "trt.calib.cache")
    assert header == "TRT-8601-EntropyCalibration2" and "input" in scales
    trt_cache.check_cache_is_fresh(manifest["calibration_cache"], manifest["parents"]["onnx"],
                                   manifest["calibration"]["sha256"])


@pytest.mark.integration
def test_qat_artifacts_and_verdict(quantized_run):
    run, out, manifest = quantized_run
    names = {a["name"] for a in manifest["artifacts"]}
    assert {"int8-cpu-qat", "int8-trt-qat"} <= names
    qat = manifest["metrics"]["qat"]
    assert isinstance(qat["qat_helped"], bool) and isinstance(qat["recovered"], float) and "ptq_val_drop" in qat
    from edgepipe.distillation import distill_enabled

    distilled = distill_enabled("auto", "qat", "classification")  # the recipe leaves qat_distill at auto
    assert qat["distill"] == ({"alpha": 0.5, "temperature": 4.0, "kind": "logits-kl"} if distilled else "off")
    from edgepipe.run import RunLayout

    found = {entry.name for _, entry in RunLayout(run).artifacts()}
    assert {"int8-cpu", "int8-trt", "fp16", "int8-cpu-qat", "int8-trt-qat"} <= found
