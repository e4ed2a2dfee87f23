"""Parameters and MACs per sample, one counter for all: forward hooks for PyTorch models, the graph for ONNX files.

prune (its MAC target and report) and bench count with the same rules, so a model and its ONNX export
report the same MACs.

The ONNX count needs only `onnx` (no torch), so it also works in a deploy bundle. MACs are multiply-
accumulates of Conv/ConvTranspose/Gemm/MatMul (and their integer/QLinear forms) and LSTM/GRU/RNN cells,
with shapes from onnx.shape_inference after pinning dynamic dimensions to 1 (so the count is per sample).
Elementwise ops, pooling and normalization are not counted (they are a rounding error for these models).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# Inputs that are not model parameters: quantization scales/zero-points, BatchNorm running statistics.
_NOT_PARAMETERS = {
    "QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2}, "BatchNormalization": {3, 4},
    "QLinearConv": {1, 2, 4, 5, 6, 7}, "QLinearMatMul": {1, 2, 4, 5, 6, 7},
    "ConvInteger": {2, 3}, "MatMulInteger": {2, 3},
}
# op type -> index of the weight input whose shape gives the reduction size
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}
_MATMUL_A = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0, "Gemm": 0, "FusedMatMul": 0}
_RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _dims(value_info: Any) -> tuple[int, ...] | None:
    shape = value_info.type.tensor_type.shape
    if not value_info.type.tensor_type.HasField("shape"):
        return None
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in shape.dim)
    return None if any(d <= 0 for d in dims) else dims


def _pin_dynamic_dims(model: Any) -> None:
    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1


def _shapes(model: Any) -> dict[str, tuple[int, ...]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = _dims(value)
        if dims is not None:
            shapes[value.name] = dims
    for initializer in model.graph.initializer:
        shapes[initializer.name] = tuple(initializer.dims)
    return shapes


def _node_macs(node: Any, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """MACs of one node at batch 1, or None when its shapes are unknown."""
    op = node.op_type
    output = shapes.get(node.output[0]) if node.output else None
    if op in _CONV_WEIGHT:
        weight = shapes.get(node.input[_CONV_WEIGHT[op]])
        if weight is None or output is None:
            return None
        if op == "ConvTranspose":  # every input pixel scatters into Cout/g x kernel outputs
            source = shapes.get(node.input[0])
            return None if source is None else math.prod(source) * math.prod(weight[1:])
        return math.prod(output) * math.prod(weight[1:])
    if op in _MATMUL_A:
        left = shapes.get(node.input[_MATMUL_A[op]])
        if left is None or output is None:
            return None
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        reduction = left[0] if (op == "Gemm" and trans_a) else left[-1]
        return math.prod(output) * reduction
    if op in _RECURRENT_GATES:
        sequence, weight, recurrence = (shapes.get(node.input[i]) for i in range(3))
        if sequence is None or weight is None or recurrence is None:
            return None
        layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
        steps, batch = (sequence[1], sequence[0]) if layout else (sequence[0], sequence[1])
        directions, gates_hidden, inputs = weight
        return steps * batch * directions * gates_hidden * (inputs + recurrence[2])
    return 0


def macs_by_node(model: Any) -> dict[str, int]:
    """MACs per sample of each node of a loaded ONNX model (by node name; nodes whose shapes are unknown: absent).
    The model is copied, not changed."""
    import onnx

    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    _pin_dynamic_dims(pinned)
    shapes = _shapes(pinned)
    counted = {node.name: _node_macs(node, shapes) for node in pinned.graph.node}
    return {name: count for name, count in counted.items() if count is not None}


def onnx_complexity(path: Path) -> dict[str, Any]:
    """{"params", "macs", "uncounted"} of an ONNX file, per sample (batch pinned to 1)."""
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(path))
    _pin_dynamic_dims(model)
    excluded: set[str] = set()
    dequantized: set[str] = set()
    for node in model.graph.node:
        for index in _NOT_PARAMETERS.get(node.op_type, ()):
            if index < len(node.input):
                excluded.add(node.input[index])
        if node.op_type == "DequantizeLinear":
            dequantized.add(node.input[0])
    floating = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
    params = 0
    for initializer in model.graph.initializer:
        if initializer.name in excluded:
            continue
        # int64 initializers are shapes/axes; integer weights count only when dequantized (QDQ INT8)
        if initializer.data_type in floating or initializer.name in dequantized:
            params += math.prod(initializer.dims)
    shapes = _shapes(model)
    macs, uncounted = 0, []
    for node in model.graph.node:
        count = _node_macs(node, shapes)
        if count is None:
            uncounted.append(node.name or node.op_type)
        else:
            macs += count
    return {"params": int(params), "macs": int(macs), "uncounted": uncounted}


def _module_macs(module: Any, inputs: tuple[Any, ...], output: Any) -> int:
    """MACs of one leaf module call at batch 1, by the same rules as the ONNX count."""
    from torch import nn

    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = math.prod(module.kernel_size)
        if module.transposed:
            return inputs[0][0].numel() * (module.out_channels // module.groups) * kernel
        return output[0].numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    if isinstance(module, nn.RNNBase):
        gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
        sequence = inputs[0]
        steps = sequence.shape[1] if module.batch_first else sequence.shape[0]
        directions = 2 if module.bidirectional else 1
        hidden, total = module.hidden_size, 0
        for layer in range(module.num_layers):
            layer_inputs = module.input_size if layer == 0 else hidden * directions
            total += steps * directions * gates * hidden * (layer_inputs + hidden)
        return total
    return 0


def torch_complexity(model: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """{"params", "macs"} of a PyTorch module per sample: forward hooks on Conv/Linear/RNN modules, in eval mode.

    Hooks (rather than torch-pruning's counter, which also counts BatchNorm/ReLU/pooling) so that the
    original model and its ONNX export report the same MACs.
    """
    import torch

    total = 0
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def hook(module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal total
        total += _module_macs(module, inputs, output[0] if isinstance(output, tuple) else output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    model.eval()  # a counting pass must not move BatchNorm's running statistics
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=torch.float32, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters())
    return {"params": int(params), "macs": int(total), "uncounted": []}


def count_macs_params(model: Any, input_shape: tuple[int, ...] | list[int]) -> tuple[int, int]:
    """(MACs, parameters) per sample of a PyTorch module: :func:`torch_complexity` as a pair."""
    counted = torch_complexity(model, tuple(input_shape))
    return counted["macs"], counted["params"]
