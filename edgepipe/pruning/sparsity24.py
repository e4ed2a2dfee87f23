"""2:4 semi-structured sparsity: in every 4 consecutive input-channel weights, 2 are zero.

Ampere-and-later tensor cores (Jetson Orin included) skip the zeros when TensorRT builds with the
sparse-weights flag. The grouping runs along the input-channel (reduction) axis: weight[o, c, kh, kw]
is grouped over c for each (o, kh, kw), as NVIDIA's ASP does ("Conv2d dim = K x CRS; we prune along C").
Eligibility follows ASP's tensor-core check: out channels % 8 == 0 and in channels % 16 == 0, groups == 1.
Nothing here makes a CPU runtime faster: onnxruntime runs the zeros as ordinary multiplications.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

OUT_MULTIPLE, IN_MULTIPLE = 8, 16


def is_eligible(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.out_channels % OUT_MULTIPLE == 0 and module.in_channels % IN_MULTIPLE == 0
    if isinstance(module, nn.Linear):
        return module.out_features % OUT_MULTIPLE == 0 and module.in_features % IN_MULTIPLE == 0
    return False


def eligible_layers(model: nn.Module, ignored: set[str]) -> dict[str, nn.Module]:
    """Conv2d/Linear layers whose shapes sparse tensor cores accept, minus the ignored ones (name -> module)."""
    return {name: module for name, module in model.named_modules() if name not in ignored and is_eligible(module)}


def require_eligible_layers(model: nn.Module, ignore_layers: list[str], model_name: str) -> dict[str, nn.Module]:
    """The layers 2:4 sparsity takes (the output layer and ``ignore_layers`` left out); one line when there is none."""
    from edgepipe.errors import EdgepipeError
    from edgepipe.pruning.channel import resolve_ignored

    layers = eligible_layers(model, set(resolve_ignored(model, ignore_layers)))
    if not layers:
        raise EdgepipeError(
            f"2:4: model '{model_name}' has no eligible layer (Conv2d with groups=1 or Linear, in channels a "
            f"multiple of {IN_MULTIPLE}, out channels a multiple of {OUT_MULTIPLE}, not the classifier or ignored); "
            "nothing to sparsify: use --method channel"
        )
    return layers


def _groups_of_four(weight: torch.Tensor) -> torch.Tensor:
    """View the weight as rows of 4 consecutive input-channel values (input axis moved last)."""
    moved = weight.movedim(1, -1) if weight.ndim > 2 else weight
    return moved.reshape(-1, 4)


def mask_2_4(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest magnitudes in each group of 4 input-channel weights (a 0/1 tensor shaped like weight)."""
    groups = _groups_of_four(weight.detach().abs())
    keep = torch.zeros_like(groups)
    keep.scatter_(1, groups.topk(2, dim=1).indices, 1.0)
    if weight.ndim > 2:
        moved_shape = weight.movedim(1, -1).shape
        return keep.reshape(moved_shape).movedim(-1, 1).contiguous()
    return keep.reshape(weight.shape)


def magnitude_masks(layers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {name: mask_2_4(module.weight) for name, module in layers.items()}


class MaskKeeper:
    """``after_step`` hook for training.fit: the optimizer may move pruned weights; zero them again."""

    def __init__(self, layers: dict[str, nn.Module], masks: dict[str, torch.Tensor]) -> None:
        self.pairs = [(layers[name], masks[name]) for name in masks]

    @torch.no_grad()
    def __call__(self, _model: nn.Module | None = None) -> None:
        for module, mask in self.pairs:
            module.weight.mul_(mask.to(module.weight.device))


def follows_2_4(weight: np.ndarray | torch.Tensor, axis: int = 1) -> bool:
    """True when every group of 4 consecutive values along ``axis`` has at most 2 non-zeros."""
    array = weight.detach().cpu().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
    if array.ndim < 2 or array.shape[axis] % 4:
        return False
    groups = np.moveaxis(array, axis, -1).reshape(-1, 4)
    return bool(((groups != 0).sum(axis=1) <= 2).all())


@dataclass(frozen=True)
class OnnxWeightPattern:
    node: str
    op: str
    initializer: str
    shape: tuple[int, ...]
    sparse_2_4: bool

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "initializer": self.initializer, "shape": list(self.shape),
                "sparse_2_4": self.sparse_2_4}


def _input_axis(node, weight_ndim: int) -> int | None:
    """Which axis of the weight initializer is the reduction (input-channel) axis for this node."""
    if node.op_type == "Conv":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((attr.i for attr in node.attribute if attr.name == "transB"), 0)
        return 1 if trans_b else 0
    if node.op_type == "MatMul" and weight_ndim == 2:
        return 0  # y = x @ W with W stored (in, out)
    return None


def onnx_weight_patterns(onnx_path: Path) -> list[OnnxWeightPattern]:
    """For each Conv/Gemm/MatMul weight stored as an initializer: does it follow the 2:4 pattern?

    Other stages (build, eval) can call this to check that a file claimed to be 2:4 really is.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    initializers = {init.name: init for init in model.graph.initializer}
    patterns = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        init = initializers.get(node.input[1])
        if init is None:
            continue
        weight = numpy_helper.to_array(init)
        axis = _input_axis(node, weight.ndim)
        if axis is None:
            continue
        patterns.append(OnnxWeightPattern(node.name, node.op_type, init.name, tuple(weight.shape),
                                          follows_2_4(weight, axis)))
    return patterns

