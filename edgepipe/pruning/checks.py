"""What a prune request needs of a model, checked on the untrained model before a pipeline trains it."""

from __future__ import annotations

from typing import Any

from torch import nn

from edgepipe.recipe import PruneConfig


def check_prune_request(model: nn.Module, spec: dict[str, Any], config: PruneConfig) -> None:
    """One line (EdgepipeError) when ``config`` cannot prune ``model`` (built from ``spec``, untrained)."""
    if config.method == "channel":
        from edgepipe.pruning.channel import check_prunable

        check_prunable(model, spec["name"], config.importance, spec["input_shape"])
    else:
        from edgepipe.pruning.channel import resolve_ignored
        from edgepipe.pruning.sparsity24 import eligible_layers

        if not eligible_layers(model, set(resolve_ignored(model, config.ignore_layers))):
            from edgepipe.errors import EdgepipeError

            raise EdgepipeError(f"2:4: model '{spec['name']}' has no layer 2:4 sparsity can take (Conv2d with "
                                "groups=1 or Linear, channels in multiples of the pattern, not the classifier or "
                                "ignored); use method: channel")
