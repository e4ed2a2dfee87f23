"""The prune stage's depth step: which residual blocks go (ranked on val), their removal, and its manifest record.

Called by :mod:`edgepipe.stages.prune` before the channel pruning; the block knowledge lives in
:mod:`edgepipe.pruning.depth`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from edgepipe.errors import EdgepipeError
from edgepipe.progress import say
from edgepipe.pruning.depth import (
    BlockSurvey,
    choose,
    rank_blocks,
    rank_correlation,
    remove_blocks,
    residual_ratios,
)
from edgepipe.recipe import PruneConfig

PROXY_BATCHES = 4  # training batches of 128 the cheap proxy (a block's relative change of its input) is read on


def prune_depth(model: nn.Module, survey: BlockSurvey, dataset, config: PruneConfig, task,
                recalibrate: Callable[[nn.Module], bool]) -> dict[str, Any]:
    """Remove the requested blocks of ``model`` in place (each ranked alone on val first, after ``recalibrate``
    re-estimated BatchNorm), recalibrate again; returns the manifest's ``depth`` record (costs in the task's
    unit: the val drop with that block alone removed)."""
    from edgepipe.training import score

    model.cpu().eval()
    cpu = torch.device("cpu")
    val_score = score(model, dataset.val, cpu, task)
    ranked = rank_blocks(model, survey.removable, lambda trial: score(trial, dataset.val, cpu, task), recalibrate)
    costs = {cost.block.name: task.drop(val_score, cost.score) for cost in ranked}
    # the cheaper proxy, recorded beside the val cost it would stand for: how well it ranks the same
    ratios = residual_ratios(model, survey.removable, itertools.islice(dataset.train.batches(128), PROXY_BATCHES))
    chosen = choose(ranked, config.remove_blocks)
    removed = [name for name in survey.names() if name in chosen]  # in model order
    remove_blocks(model, removed, survey.input_shape)
    recalibrated = recalibrate(model)
    say(f"prune: removed {len(removed)} block{'s' if len(removed) != 1 else ''} ({', '.join(removed)}); "
        f"val cost of each alone: {', '.join(f'{costs[name]:+.2f}' for name in removed)} {task.unit}")
    return {"removed": removed, "costs": costs, "refused": {r.name: r.describe() for r in survey.refused},
            "batchnorm_recalibrated": recalibrated, "val_score_removed": score(model, dataset.val, cpu, task),
            "proxy": {"residual_ratio": ratios,
                      "rank_correlation": rank_correlation([costs[name] for name in ratios], list(ratios.values()))}}


def check_replays(model: nn.Module, base_spec: dict[str, Any], history: list, removed: list[str]) -> None:
    """Blocks removed after an earlier channel pruning: the record replays depth first, so make sure that rebuilds
    this model's shapes now, before fine-tuning (the stage compares the outputs at the end)."""
    from edgepipe.models import build_model
    from edgepipe.pruning.replay import rebuild, rebuild_record

    if not history:
        return
    try:
        rebuilt = rebuild(build_model(base_spec), rebuild_record(base_spec["input_shape"], history, removed))
    except EdgepipeError:
        rebuilt = None
    shapes = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    if rebuilt is None or {name: tuple(value.shape) for name, value in rebuilt.state_dict().items()} != shapes:
        raise EdgepipeError("remove_blocks: these blocks cannot be removed after the channel pruning already done "
                            "to this model (its record would not rebuild it); prune the unpruned model with "
                            "remove_blocks and ratio/target_macs together")
