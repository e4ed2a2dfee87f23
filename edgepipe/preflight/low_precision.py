"""FP8 and FP4 in an ONNX graph, against what the target's tensor cores run.

An FP8 model (Quantize/DequantizeLinear with a FLOAT8E4M3FN zero point, as TensorRT Model Optimizer writes it)
or an NVFP4 one (FLOAT4E2M1 weights) builds only where the hardware has those types: FP8 from compute capability
8.9, FP4 on Blackwell (targets.yaml cites NVIDIA's tables). On Orin or Ampere the build would fail deep inside
TensorRT, so the preflight says so first.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from edgepipe.preflight import Finding
from edgepipe.preflight.operators import iter_nodes
from edgepipe.targets import TargetProfile

# onnx TensorProto element types per low precision (onnx.proto: FLOAT8E4M3FN=17 ... FLOAT4E2M1=23)
_TYPES = {
    "fp8": {TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
            TensorProto.FLOAT8E5M2FNUZ},
    "fp4": {getattr(TensorProto, "FLOAT4E2M1", 23)},
}


def _element_types(model: onnx.ModelProto) -> set[int]:
    graph = model.graph
    found = {tensor.data_type for tensor in graph.initializer}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        found.add(value.type.tensor_type.elem_type)
    for node in iter_nodes(graph):
        for attribute in node.attribute:
            if attribute.name in ("to", "output_dtype") and attribute.type == onnx.AttributeProto.INT:
                found.add(attribute.i)  # Cast(to=...), QuantizeLinear(output_dtype=...)
            elif attribute.type == onnx.AttributeProto.TENSOR:
                found.add(attribute.t.data_type)  # Constant(value=...)
    return found


def low_precisions(model: onnx.ModelProto) -> list[str]:
    """["fp8"], ["fp4"], both or none: the low-precision types the graph holds."""
    types = _element_types(model)
    return [name for name, members in _TYPES.items() if types & members]


def check_low_precision(model: onnx.ModelProto, target: TargetProfile) -> list[Finding]:
    return [
        Finding("error", "precision",
                f"the model holds {name.upper()} tensors but {target.name} ({target.sm}) has no {name.upper()} "
                f"tensor cores; export or quantize it to INT8 or FP16 for this target", name)
        for name in low_precisions(model) if name not in target.precisions
    ]
