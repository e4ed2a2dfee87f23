"""Graph rules TensorRT enforces at build time: QDQ form, dynamic axes, the FP16 range of the weights.

Sources (TensorRT developer guide, "Working with quantized types" / "Explicit quantization"):
zero points must be 0 (the parser's QuantizeLinear/DequantizeLinear rows say so too); activations are
quantized per tensor; weights per channel along the output-channel axis (axis 0 for Conv weights KCRS).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

from edgepipe.preflight import Finding
from edgepipe.preflight.operators import iter_nodes

FP16_MAX = 65504.0
FP16_SMALLEST_SUBNORMAL = 2.0**-24  # nonzero values below this become 0 in FP16
FLUSH_WARNING_FRACTION = 0.01
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs (with a `value` tensor), by name, for every (sub)graph."""
    found = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in iter_nodes(graph):
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.type == onnx.AttributeProto.TENSOR:
                    found[node.output[0]] = numpy_helper.to_array(attribute.t)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found.update({init.name: numpy_helper.to_array(init) for init in attribute.g.initializer})
    return found


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in iter_nodes(graph):
        for name in node.input:
            users[name].append(node)
    return users


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(onnx.helper.get_attribute_value(attribute))
    return default


def _weight_output_axis(consumer: onnx.NodeProto, weight_name: str) -> int | None:
    """The output-channel axis of a weight tensor for the layer consuming it (None: not a weight input)."""
    if consumer.op_type == "Conv" and len(consumer.input) > 1 and consumer.input[1] == weight_name:
        return 0  # KCRS
    if consumer.op_type == "Gemm" and len(consumer.input) > 1 and consumer.input[1] == weight_name:
        return 0 if _attribute(consumer, "transB", 0) else 1
    if consumer.op_type == "MatMul" and len(consumer.input) > 1 and consumer.input[1] == weight_name:
        return 1
    return None


def has_qdq(model: onnx.ModelProto) -> bool:
    return any(node.op_type in QDQ_OPS for node in iter_nodes(model.graph))


def check_qdq(model: onnx.ModelProto) -> list[Finding]:
    """Symmetric int8 with zero point 0, positive finite constant scales, per-channel only on weights."""
    graph = model.graph
    values = constants(graph)
    users = _consumers(graph)
    findings: list[Finding] = []
    for index, node in enumerate(iter_nodes(graph)):
        if node.op_type not in QDQ_OPS:
            continue
        name = node.name or f"{node.op_type}#{index}"
        scale_name = node.input[1] if len(node.input) > 1 else ""
        zero_name = node.input[2] if len(node.input) > 2 else ""
        scale = values.get(scale_name)
        if scale is None:
            findings.append(
                Finding(
                    "error",
                    "qdq",
                    f"{name}: scale {scale_name!r} is not a constant; TensorRT needs build-time scales",
                    name,
                )
            )
        elif not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            findings.append(
                Finding("error", "qdq", f"{name}: scales must be positive and finite (min {scale.min():g})", name)
            )
        if not zero_name:
            if node.op_type == "QuantizeLinear":
                findings.append(
                    Finding(
                        "warning",
                        "qdq",
                        f"{name}: no zero point, so ONNX makes the output uint8; "
                        "TensorRT quantizes to int8: give an int8 zero point of 0",
                        name,
                    )
                )
        else:
            zero_point = values.get(zero_name)
            if zero_point is None:
                findings.append(Finding("error", "qdq", f"{name}: zero point {zero_name!r} is not a constant", name))
            else:
                if zero_point.dtype != np.int8:
                    findings.append(
                        Finding(
                            "error",
                            "qdq",
                            f"{name}: zero point is {zero_point.dtype}; TensorRT needs "
                            "symmetric int8 (quantize with activation and weight type QInt8)",
                            name,
                        )
                    )
                if np.any(zero_point != 0):
                    findings.append(
                        Finding(
                            "error",
                            "qdq",
                            f"{name}: asymmetric quantization (zero point "
                            f"{zero_point.ravel()[:4].tolist()}); TensorRT needs zero point 0 "
                            "(onnxruntime quantize_static: ActivationSymmetric=True, "
                            "WeightSymmetric=True)",
                            name,
                        )
                    )
        if scale is None or scale.size <= 1:
            continue
        # per-channel: allowed on constant weights along their output-channel axis only
        data_name = node.input[0]
        rank = values[data_name].ndim if data_name in values else None
        axis = _attribute(node, "axis", 1)
        if rank is not None and axis < 0:
            axis += rank
        if data_name not in values and node.op_type == "QuantizeLinear":
            findings.append(
                Finding(
                    "error",
                    "qdq",
                    f"{name}: per-channel scales on an activation; TensorRT quantizes activations per tensor only",
                    name,
                )
            )
            continue
        weight_output = node.output[0]
        if node.op_type == "QuantizeLinear":
            # Q(weight) -> DQ -> layer: look through the DQ to the layer
            dequant = [user for user in users.get(weight_output, []) if user.op_type == "DequantizeLinear"]
            weight_output = dequant[0].output[0] if dequant else weight_output
        for consumer in users.get(weight_output, []):
            expected = _weight_output_axis(consumer, weight_output)
            if expected is not None and axis != expected:
                severity = "error" if consumer.op_type == "Conv" else "warning"
                findings.append(
                    Finding(
                        severity,
                        "qdq",
                        f"{name}: per-channel axis {axis} on the weights of "
                        f"{consumer.op_type} {consumer.name!r}; TensorRT needs the output-channel axis "
                        f"{expected}",
                        name,
                    )
                )
    return findings


def check_dynamic_axes(model: onnx.ModelProto, dla: bool = False) -> list[Finding]:
    """Only the batch axis may be dynamic (edgepipe builds batch-only profiles); DLA needs all static."""
    initializer_names = {init.name for init in model.graph.initializer}
    findings: list[Finding] = []
    for graph_input in model.graph.input:
        if graph_input.name in initializer_names:
            continue  # IR < 4 lists initializers as inputs
        tensor_type = graph_input.type.tensor_type
        if not tensor_type.HasField("shape"):
            findings.append(
                Finding(
                    "error",
                    "dynamic-axes",
                    f"input {graph_input.name!r} has no shape (unknown rank); export with a fixed rank",
                    graph_input.name,
                )
            )
            continue
        for axis, dim in enumerate(tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            label = dim.dim_param or "?"
            if axis == 0 and not dla:
                findings.append(
                    Finding(
                        "info",
                        "dynamic-axes",
                        f"input {graph_input.name!r}: dynamic batch axis ({label}); "
                        "build makes an optimization profile for it (--batch min:opt:max)",
                        graph_input.name,
                    )
                )
            elif axis == 0:
                findings.append(
                    Finding(
                        "warning",
                        "dynamic-axes",
                        f"input {graph_input.name!r}: dynamic batch axis ({label}); DLA needs static "
                        "shapes: build with --batch N:N:N (min=opt=max) or export a fixed batch",
                        graph_input.name,
                    )
                )
            else:
                findings.append(
                    Finding(
                        "error",
                        "dynamic-axes",
                        f"input {graph_input.name!r}: axis {axis} is dynamic "
                        f"({label}); only the batch axis may be: export with a static size",
                        graph_input.name,
                    )
                )
    return findings


def check_fp16_range(model: onnx.ModelProto, overflow_severity: str = "error") -> list[Finding]:
    """Float weights beyond FP16's range become inf; nonzero ones below its smallest subnormal become 0."""
    graph = model.graph
    users = _consumers(graph)
    findings: list[Finding] = []
    for name, array in constants(graph).items():
        if array.dtype not in (np.float32, np.float64) or array.size == 0:
            continue
        if any(user.op_type in QDQ_OPS for user in users.get(name, [])):
            continue  # QDQ scales and quantized weights stay FP32/INT8 in TensorRT
        magnitude = np.abs(array.astype(np.float64))
        peak = float(magnitude.max())
        if peak > FP16_MAX:
            count = int((magnitude > FP16_MAX).sum())
            findings.append(
                Finding(
                    overflow_severity,
                    "fp16-range",
                    f"{name}: {count} value(s) up to {peak:.4g} exceed "
                    f"FP16's max {FP16_MAX:g} and become inf; keep this layer in FP32 or rescale",
                    name,
                )
            )
        nonzero = magnitude[magnitude > 0]
        flushed = int((nonzero < FP16_SMALLEST_SUBNORMAL).sum())
        if flushed:
            fraction = flushed / nonzero.size
            severity = "warning" if fraction > FLUSH_WARNING_FRACTION else "info"
            findings.append(
                Finding(
                    severity,
                    "fp16-range",
                    f"{name}: {flushed} nonzero value(s) ({fraction:.1%}) are below "
                    f"FP16's smallest subnormal {FP16_SMALLEST_SUBNORMAL:.3g} and flush to 0",
                    name,
                )
            )
    return findings
