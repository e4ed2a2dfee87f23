"""How much of an "INT8" graph is INT8: its weight layers that run on quantized activations and weights, by count
and by MACs. An accuracy fallback that keeps 219 of 222 layers in float still writes a file called int8; this is
what says so in every quantize line, the report and the naive-vs-aware comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepipe.quant.tracks import QUANTIZED_OP_TYPES


def int8_coverage(path: Path) -> dict[str, Any]:
    """{"layers", "int8_layers", "layer_fraction", "macs", "int8_macs", "mac_fraction"} of a QDQ (or float) ONNX.

    A weight layer (Conv, ConvTranspose, Gemm, MatMul) is INT8 when both its input and its weight arrive through
    DequantizeLinear: onnxruntime and TensorRT then fuse it into an integer kernel. A layer the fallback kept in
    float reads a float weight initializer."""
    import onnx

    from edgepipe.complexity import macs_by_node

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    initializers = {initializer.name for initializer in graph.initializer}

    def dequantized(tensor: str) -> bool:
        node = producer.get(tensor)
        return node is not None and node.op_type == "DequantizeLinear"

    layers = [node for node in graph.node if node.op_type in QUANTIZED_OP_TYPES and len(node.input) > 1
              and (node.input[1] in initializers or dequantized(node.input[1]))]
    int8 = [node for node in layers if dequantized(node.input[0]) and dequantized(node.input[1])]
    macs = macs_by_node(model) if layers else {}
    total = sum(macs.get(node.name, 0) for node in layers)
    int8_macs = sum(macs.get(node.name, 0) for node in int8)
    return {"layers": len(layers), "int8_layers": len(int8),
            "layer_fraction": round(len(int8) / len(layers), 4) if layers else 0.0,
            "macs": int(total), "int8_macs": int(int8_macs),
            "mac_fraction": round(int8_macs / total, 4) if total else 0.0}


def describe_coverage(coverage: dict[str, Any]) -> str:
    """'INT8: 41/45 layers, 97.1 % of MACs' for a quantize line."""
    return (f"INT8: {coverage['int8_layers']}/{coverage['layers']} layers, "
            f"{100 * coverage['mac_fraction']:.1f} % of MACs")
