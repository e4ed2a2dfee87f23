"""What tests read out of ONNX graphs and datasets to check a stage's work (nothing in edgepipe needs these)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.quant.tracks import QUANTIZED_OP_TYPES, qdq_parameters


def quantizable_nodes(model_path: Path) -> list[tuple[str, str]]:
    """(node name, op type) of the nodes whose weights get quantized, in graph order."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    return [(node.name, node.op_type) for node in model.graph.node
            if node.op_type in QUANTIZED_OP_TYPES and len(node.input) > 1 and node.input[1] in initializers]


def activation_scales(model_path: Path) -> dict[str, float]:
    """Per-tensor scales of the activations a QDQ graph quantizes (QuantizeLinear on a non-constant input)."""
    return {entry["input"]: float(entry["scale"]) for entry in qdq_parameters(model_path)
            if entry["op"] == "QuantizeLinear" and not entry["weight"] and np.asarray(entry["scale"]).size == 1}


def canvas_sources(config) -> dict[str, np.ndarray]:
    """The source digit (index into the 5,000) of every object on each split's canvases, [N, MAX_OBJECTS], -1 where
    none."""
    from edgepipe.data.canvas import _build

    return {name: sources for name, (_, _, sources) in _build(config).items()}
