"""FP16 graph with FP32 inputs/outputs (TensorRT 11 strongly typed FP16, GPUs), and what would overflow FP16.

The conversion is onnxruntime's own ``onnxruntime.transformers.float16.convert_float_to_float16``
(onnxconverter-common's converter, shipped inside onnxruntime). It silently clamps weights outside
FP16's range; we report them first, and keep every node whose calibrated activations exceed FP16's
range in FP32 (``node_block_list``) rather than let it produce Inf.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
FP16_TINY = float(np.finfo(np.float16).tiny)  # smallest normal, 6.1e-05


def overflow_report(model_path: Path, ranges: dict[str, tuple[float, float]]) -> dict:
    """Weights and calibrated activations beyond FP16's range, and weights that underflow to subnormals."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    weights_over, weights_under = [], []
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        values = np.abs(numpy_helper.to_array(init))
        if values.size and values.max() > FP16_MAX:
            weights_over.append({"tensor": init.name, "max_abs": float(values.max())})
        tiny = int(((values > 0) & (values < FP16_TINY)).sum())
        if tiny:
            weights_under.append({"tensor": init.name, "subnormal_values": tiny})
    activations_over = [{"tensor": name, "max_abs": max(abs(lo), abs(hi))} for name, (lo, hi) in ranges.items()
                        if max(abs(lo), abs(hi)) > FP16_MAX]
    producers = {out: node.name for node in model.graph.node for out in node.output}
    return {
        "weights_over_fp16_max": weights_over,
        "weights_underflowing": weights_under,
        "activations_over_fp16_max": activations_over,
        "nodes_kept_fp32": sorted({producers[a["tensor"]] for a in activations_over if a["tensor"] in producers}),
    }


def convert_fp16(source: Path, out: Path, keep_fp32_nodes: list[str]) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    # The exporter's value_info (inferred shapes and types) misleads the converter around Resize: it keeps the
    # recorded FP32 types of tensors it turns FP16 and fails onnx.checker. The checker infers them again anyway.
    del model.graph.value_info[:]
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep_fp32_nodes or None)
    topological_sort(converted.graph)
    onnx.save(converted, str(out))
    onnx.checker.check_model(str(out), full_check=True)
    return out


def topological_sort(graph) -> None:
    """The converter appends its FP32->FP16 input Casts after their consumers; ONNX requires producers first."""
    available = {i.name for i in graph.input} | {init.name for init in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:  # a cycle or a dangling input: leave the order to onnx.checker to report
            ordered += pending
            break
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [node for node in pending if node not in ready]
    del graph.node[:]
    graph.node.extend(ordered)
