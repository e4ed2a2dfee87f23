"""Replay a recorded pruning history on a freshly built model, so a pruned checkpoint reloads from JSON + tensors.

torch-pruning records every pruned group as ``(root module name, is_out_channel_pruning, indices)``
(``pruner.pruning_history()``); ``DependencyGraph.load_pruning_history`` redoes them in order on an
unpruned model of the same architecture. The manifest stores that list (ints only) under
``model.rebuild``; ``edgepipe.checkpoint.load_model`` calls :func:`rebuild` before loading the weights.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from edgepipe.errors import EdgepipeError

REBUILD_FUNCTION = "edgepipe.pruning.replay:rebuild"


def history_to_json(history: list) -> list[list[Any]]:
    """torch-pruning's history (indices may be tensors) as plain JSON: [[name, is_out, [int, ...]], ...]."""
    return [[str(name), bool(is_out), [int(index) for index in indices]] for name, is_out, indices in history]


def example_input(input_shape: list[int] | tuple[int, ...], batch: int = 2) -> torch.Tensor:
    """A batch of 2: BatchNorm1d refuses a batch of one in training mode, and tracing runs a forward pass."""
    return torch.randn(batch, *input_shape)


def rebuild_record(input_shape: list[int] | tuple[int, ...], history: list[list[Any]]) -> dict[str, Any]:
    return {"function": REBUILD_FUNCTION, "input_shape": list(input_shape), "history": history}


def replay_history(model: nn.Module, input_shape: list[int] | tuple[int, ...], history: list[list[Any]]) -> nn.Module:
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    with warnings.catch_warnings():
        # A ViT's cls_token / pos_embed are parameters outside any layer: torch-pruning warns that it will prune
        # their last dimension (torch_pruning/dependency/graph.py, "Unwrapped parameters detected"). The replay
        # does exactly what the recorded pruning did, so that warning says nothing here; every other one passes.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected", category=UserWarning)
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input(input_shape))
    try:
        graph.load_pruning_history([[name, is_out, list(indices)] for name, is_out, indices in history])
    except (AttributeError, IndexError, KeyError) as exc:
        raise EdgepipeError(f"pruning history does not fit this model ({type(exc).__name__}: {exc}); "
                            "the model code changed since it was pruned: prune it again") from None
    model.train(was_training)
    return model


def rebuild(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """The ``model.rebuild`` hook of a pruned manifest: reshape ``model`` as it was pruned (weights come next)."""
    return replay_history(model, record["input_shape"], record["history"])
