"""What a prune request needs of a model, checked on the untrained model before a pipeline trains it: the model
must be one the pruner can take, the blocks asked for must be removable, and the runtime a latency target is timed
on must be there (or, for TensorRT, the device's profile)."""

from __future__ import annotations

from typing import Any

from torch import nn

from edgepipe.recipe import PruneConfig


def check_prune_request(model: nn.Module, spec: dict[str, Any], config: PruneConfig) -> None:
    """One line (EdgepipeError) when ``config`` cannot prune ``model`` (built from ``spec``, untrained)."""
    if config.method == "channel":
        from edgepipe.pruning.channel import check_prunable

        if config.ratio is not None or config.target_macs is not None or config.target_latency_ms is not None:
            check_prunable(model, spec["name"], config.importance, spec["input_shape"])
    else:
        from edgepipe.pruning.sparsity24 import require_eligible_layers

        require_eligible_layers(model, config.ignore_layers, spec["name"])
    from edgepipe.pruning.depth import survey_depth

    survey_depth(model, spec, config)
    if config.target_latency_ms is not None:
        from edgepipe.pruning.latency_target import check_latency_request

        check_latency_request(config)
