"""What a prune request needs of a model, checked on the untrained model before a pipeline trains it: the model
must be one the pruner can take, the blocks asked for must be removable, and the runtime a latency target is timed
on must be there (or, for TensorRT, the device's profile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edgepipe.errors import EdgepipeError
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
    if config.remove_blocks is not None:
        from edgepipe.pruning.depth import check_request, survey_blocks

        check_request(survey_blocks(model, spec["input_shape"], ignored=config.ignore_layers), config.remove_blocks,
                      spec["name"])
    if config.target_latency_ms is not None:
        _check_latency_runtime(config)


def _check_latency_runtime(config: PruneConfig) -> None:
    from edgepipe.pruning.latency_target import no_trt_profile_line
    from edgepipe.pruning.layer_latency import read_trtexec_profile, require_runtime

    if config.latency_runtime != "tensorrt":
        require_runtime(config.latency_runtime)
    elif config.latency_profile is None:
        raise EdgepipeError(no_trt_profile_line())
    else:
        read_trtexec_profile(Path(config.latency_profile))
