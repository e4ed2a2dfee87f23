"""Replay a recorded pruning history on a freshly built model, so a pruned checkpoint reloads from JSON + tensors.

torch-pruning records every pruned group as ``(root module name, is_out_channel_pruning, indices)``
(``pruner.pruning_history()``); ``DependencyGraph.load_pruning_history`` redoes them in order on an
unpruned model of the same architecture. The manifest stores that list (ints only) under
``model.rebuild``; ``edgepipe.checkpoint.load_model`` calls :func:`rebuild` before loading the weights.

Depth pruning (:mod:`edgepipe.pruning.depth`) adds ``removed_blocks``: module names replaced by ``nn.Identity``,
applied before the channel history (depth first, then width, as the prune stage does). Records without the key
(made before depth pruning existed) remove nothing.
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


def rebuild_record(input_shape: list[int] | tuple[int, ...], history: list[list[Any]],
                   removed_blocks: list[str] | None = None) -> dict[str, Any]:
    record = {"function": REBUILD_FUNCTION, "input_shape": list(input_shape), "history": history}
    if removed_blocks:
        record["removed_blocks"] = list(removed_blocks)
    return record


def _inside(name: str, blocks: list[str]) -> bool:
    return any(name == block or name.startswith(block + ".") for block in blocks)


def replay_history(model: nn.Module, input_shape: list[int] | tuple[int, ...], history: list[list[Any]],
                   removed_blocks: list[str] | None = None) -> nn.Module:
    """Redo ``history`` on ``model`` (whose ``removed_blocks`` are already nn.Identity).

    A group rooted inside a removed block was recorded when width pruning came before the block's removal
    (pruning a pruned model). An identity block's input and output channels are one group with the layers before
    it, which torch-pruning 1.6.1 meets first and roots the group at; so a group rooted inside the block held only
    its inner channels, which left with it, and is skipped. The prune stage checks that the record rebuilds the
    model's shapes before it trusts this (stages/prune_depth.check_replays).
    """
    import torch_pruning as tp

    removed_blocks = removed_blocks or []
    history = [entry for entry in history if not _inside(str(entry[0]), removed_blocks)]

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
    from edgepipe.pruning.depth import remove_blocks

    removed = list(record.get("removed_blocks", []))
    remove_blocks(model, removed, record["input_shape"])
    return replay_history(model, record["input_shape"], record["history"], removed)
