"""Tiny ONNX run directories for the TensorRT tests (onnx.helper only: no torch, milliseconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgepipe.artifacts import new_manifest, sha256_file, write_manifest


def tiny_onnx(path: Path, *, qdq: bool = False, static_batch: int | None = None) -> Path:
    batch: int | str = static_batch if static_batch is not None else "batch"
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])
    weight = numpy_helper.from_array(np.ones((16, 10), dtype=np.float32), "weight")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], name="flatten")]
    inits = [weight]
    source = "flat"
    if qdq:
        inits += [
            numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
            numpy_helper.from_array(np.array(0, np.int8), "zero"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["flat", "scale", "zero"], ["q"], name="quant"),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"], name="dequant"),
        ]
        source = "dq"
    nodes.append(helper.make_node("MatMul", [source, "weight"], ["logits"], name="fc"))
    graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


def make_run(
    root: Path,
    *,
    fp16: bool = True,
    qdq: bool = True,
    cache: bool = True,
    prune: str | None = None,
    cache_header: str = "TRT-8601-EntropyCalibration2",
) -> Path:
    run = root / "run"
    (run / "export").mkdir(parents=True)
    model = tiny_onnx(run / "export" / "model.onnx")
    write_manifest(run / "export", new_manifest("export", {}, {}))
    quantize = run / "quantize"
    quantize.mkdir()
    if fp16:
        tiny_onnx(quantize / "model.fp16.onnx")
    if qdq:
        tiny_onnx(quantize / "model.int8.trt.onnx", qdq=True)
    tiny_onnx(quantize / "model.int8.cpu.onnx", qdq=True)
    if cache:
        (quantize / "trt.calib.cache").write_text(f"{cache_header}\ninput: 3c010a14\nlogits: 3d8f5c29\n")
    manifest = new_manifest("quantize", {}, {"onnx": sha256_file(model), "calibration_set": "0" * 64})
    if cache:  # what the quantize stage records about the cache it wrote
        manifest.calibration_cache = {"file": "trt.calib.cache", "model_sha256": sha256_file(model),
                                      "calibration_sha256": "0" * 64}
    write_manifest(quantize, manifest)
    if prune is not None:
        (run / "prune").mkdir()
        write_manifest(run / "prune", new_manifest("prune", {"method": prune}, {}))
    return run


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
