"""A hand-made quantize/ stage on a run (the quantize stage is another engineer's), for bundle tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgepipe.artifacts import add_artifact, new_manifest, read_manifest, sha256_file, write_manifest


def _qdq_copy(source: Path, dest: Path, zero_point: int = 0) -> None:
    """``source`` with one QuantizeLinear/DequantizeLinear pair on its input (a QDQ INT8 graph)."""
    model = onnx.load(str(source))
    graph = model.graph
    original_input = graph.input[0].name
    graph.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), "bundle_scale"),
                              numpy_helper.from_array(np.array(zero_point, np.int8), "bundle_zero")])
    for node in graph.node:
        node.input[:] = ["input_dq" if name == original_input else name for name in node.input]
    quantize = helper.make_node("QuantizeLinear", [original_input, "bundle_scale", "bundle_zero"], ["input_q"])
    dequantize = helper.make_node("DequantizeLinear", ["input_q", "bundle_scale", "bundle_zero"], ["input_dq"])
    nodes = [quantize, dequantize, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(dest))


def add_quantize_stage(run: Path, *, zero_point: int = 0) -> Path:
    """A hand-made quantize/ (the quantize stage is another engineer's): real FP16 graph, QDQ graph, cache."""
    from edgepipe.quant.fp16 import convert_fp16

    fp32 = run / "export" / "model.onnx"
    quantize = run / "quantize"
    quantize.mkdir()
    convert_fp16(fp32, quantize / "model.fp16.onnx", [])
    _qdq_copy(fp32, quantize / "model.int8.trt.onnx", zero_point)
    _qdq_copy(fp32, quantize / "model.int8.cpu.onnx", 3)  # asymmetric like the u8s8 CPU track
    (quantize / "trt.calib.cache").write_text("TRT-8601-EntropyCalibration2\ninput: 3c010a14\n")
    manifest = new_manifest("quantize", {}, {"onnx": sha256_file(fp32)})
    manifest.dataset = read_manifest(run / "export").dataset
    for name, file, precision, track in (("fp16", "model.fp16.onnx", "fp16", "fp16"),
                                         ("int8-trt", "model.int8.trt.onnx", "int8", "tensorrt-qdq"),
                                         ("int8-cpu", "model.int8.cpu.onnx", "int8", "cpu")):
        add_artifact(manifest, quantize, file, name=name, fmt="onnx", precision=precision, track=track)
    manifest.calibration_cache = {"file": "trt.calib.cache", "sha256": sha256_file(quantize / "trt.calib.cache"),
                                     "model_sha256": sha256_file(fp32)}
    write_manifest(quantize, manifest)
    return quantize
