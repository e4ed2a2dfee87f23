"""The prune stage's steps on the model: width (channels, by ratio, MAC target or latency target) or 2:4 sparsity,
each followed by the fine-tune, on the job every step shares (:class:`PruneJob`).

Called by :mod:`edgepipe.stages.prune` after its depth step (:mod:`edgepipe.stages.prune_depth`); the pruning
knowledge lives in :mod:`edgepipe.pruning`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgepipe.progress import say
from edgepipe.recipe import PruneConfig, TrainConfig

GRADIENT_BATCHES, GRADIENT_BATCH_SIZE = 4, 64
BATCHNORM_SAMPLES = 2048  # training images (not augmented) that re-estimate BatchNorm statistics after a step


@dataclass
class PruneJob:
    """What every step of one prune shares: the model's spec, the data, the settings, where it fine-tunes, the task,
    and the teacher its fine-tunes distil from (None: no distillation)."""

    spec: dict[str, Any]
    dataset: Any
    train_config: TrainConfig
    config: PruneConfig
    device: torch.device
    task: Any
    teacher: Any = None


def scores(model: nn.Module, dataset, device, task) -> dict[str, float]:
    from edgepipe.training import score

    return {"val": score(model, dataset.val, device, task), "test": score(model, dataset.test, device, task)}


def finetune(model: nn.Module, job: PruneJob, *, label: str, after_step=None) -> dict[str, Any] | None:
    """The job's fine-tune of ``model`` (distilling from its teacher), or None with no fine-tuning epochs."""
    from edgepipe.distillation import distill_record
    from edgepipe.training import FitOptions, fit, seed_everything

    dataset, train_config, config, task, teacher = job.dataset, job.train_config, job.config, job.task, job.teacher
    if config.finetune_epochs == 0:
        return None
    seed_everything(train_config.seed)
    lr = config.finetune_lr or train_config.lr / 10
    result = fit(model, dataset.train, dataset.val, train_config, task,
                 FitOptions(epochs=config.finetune_epochs, lr=lr, device=job.device, after_step=after_step,
                            progress_label=label, teacher=teacher))
    return {"epochs": config.finetune_epochs, "lr": lr, "best_epoch": result.best_epoch,
            "best_val_score": result.best_val_score, "distill": distill_record(teacher, task)}


UNDERSHOOT = 0.03  # kept MACs this far under the target are said, with why


def undershoot(config: PruneConfig, achieved: float, next_above: float | None) -> str:
    """Why the MACs kept are well under the target, or ''."""
    if config.target_macs - achieved < UNDERSHOOT:
        return ""
    step = f"; the step before keeps {next_above:.1%}, over it" if next_above is not None else ""
    return (f": {config.target_macs - achieved:.1%} under the target{step}. Channel counts move in multiples of "
            f"round_to={config.round_to} per layer, and coupled layers (residual adds, grouped or depthwise "
            "convolutions) lose channels together, so the MACs jump between ratios; a smaller round_to gets closer")


def batchnorm_batches(dataset, batch_size: int = 128):
    """The first BATCHNORM_SAMPLES training inputs, a batch at a time."""
    import itertools

    return itertools.islice(dataset.train.batches(batch_size), -(-BATCHNORM_SAMPLES // batch_size))


def prune_width(model: nn.Module, job: PruneJob, *, macs_original: int, plan=None) -> dict[str, Any]:
    """Width pruning by ratio, MAC target or latency target (``plan``) (``target_macs`` is a fraction of
    ``macs_original``, the stage's input, so MACs that depth pruning already removed count), then fine-tuning; with
    no width target, only the fine-tuning."""
    from edgepipe.complexity import count_macs_params
    from edgepipe.pruning.channel import (
        ChannelOptions,
        build_pruner,
        check_prunable,
        pruning_step,
        recalibrate_batchnorm,
        search_ratio,
    )
    from edgepipe.pruning.replay import history_to_json

    spec, dataset, train_config, config, task = job.spec, job.dataset, job.train_config, job.config, job.task
    input_shape = spec["input_shape"]
    macs_now = count_macs_params(model, input_shape)[0]
    target = None if config.target_macs is None else config.target_macs * macs_original / macs_now
    if config.ratio is not None or config.target_latency_ms is not None or (target is not None and target < 1):
        check_prunable(model, spec["name"], config.importance, input_shape)
    # the gradient batches of Taylor importance: the first few training samples (a folder is not read whole)
    gradient_samples = GRADIENT_BATCH_SIZE * GRADIENT_BATCHES
    x_train = torch.from_numpy(dataset.train.take(gradient_samples))
    y_train = x_train if task.targets_are_inputs else torch.from_numpy(task.targets(dataset.train)[:gradient_samples])
    loss_fn = task.loss(train_config)

    def gradient_batches():
        size = GRADIENT_BATCH_SIZE

        def loss_on(x, y):
            def loss_of(trial: nn.Module) -> torch.Tensor:
                device = next(trial.parameters()).device
                return loss_fn(trial(x.to(device)), y.to(device))
            return loss_of

        return [loss_on(x_train[i * size:(i + 1) * size], y_train[i * size:(i + 1) * size])
                for i in range(GRADIENT_BATCHES)]

    options = ChannelOptions.of(config, spec["name"])
    model.cpu()
    search = None
    ratio = config.ratio
    if config.target_latency_ms is not None:
        ratio, search = _latency_ratio(model, input_shape, plan, gradient_batches, options)
    elif target is not None and target >= 1:  # depth pruning alone met the MAC target
        say(f"prune: the blocks removed keep {macs_now / macs_original:.1%} of the MACs (target "
            f"{config.target_macs:.0%}): no channel pruning")
        search = {"target_macs": config.target_macs, "ratio": None, "mac_fraction": macs_now / macs_original}
    elif ratio is None and target is not None:
        ratio, achieved, above = search_ratio(model, input_shape, target, options, gradient_batches)
        achieved *= macs_now / macs_original
        search = {"target_macs": config.target_macs, "ratio": ratio, "one_shot_mac_fraction": achieved}
        say(f"prune: channel ratio {ratio:.3f} keeps {achieved:.1%} of the MACs (target {config.target_macs:.0%})"
            + undershoot(config, achieved, None if above is None else above * macs_now / macs_original))
    pruner = None if ratio is None else build_pruner(model, input_shape, options, ratio=ratio, steps=config.steps)
    steps, before_finetune = [], None
    step_count = config.steps if pruner else 1  # depth only: the blocks went at once, one fine-tune
    for step in range(1, step_count + 1):
        model.cpu()
        if pruner is not None:
            pruning_step(pruner, model, config.importance, gradient_batches)
        recalibrated = recalibrate_batchnorm(model, batchnorm_batches(dataset))
        macs, params = count_macs_params(model, input_shape)
        before_finetune = scores(model, dataset, torch.device("cpu"), task)
        tuned = finetune(model, job, label=f"prune step {step}/{step_count}")
        model.cpu()
        steps.append({"step": step, "macs": macs, "params": params, "batchnorm_recalibrated": recalibrated,
                      "val_score_pruned": before_finetune["val"], "finetune": tuned})
    history = history_to_json(pruner.pruning_history()) if pruner else []
    return {"ratio": ratio, "search": search, "steps": steps, "history": history,
            "score_before_finetune": before_finetune}


def _latency_ratio(model: nn.Module, input_shape, plan, gradient_batches, options) -> tuple[float, dict[str, Any]]:
    """The least channel ratio whose one-shot candidate meets the plan's latency target (pruning/latency_target.py);
    the candidates are width pruning here (depth pruning plugs into ``candidates``)."""
    from edgepipe.pruning.channel import MAX_RATIO
    from edgepipe.pruning.latency_target import search_latency_ratio, width_candidates

    candidates = width_candidates(model, input_shape, options, gradient_batches)
    search = search_latency_ratio(model, input_shape, plan, candidates, max_strength=MAX_RATIO)
    tried = f"{len(search['trials'])} candidates {'scored' if plan.proxy else 'timed'}"
    say(f"prune: channel ratio {search['ratio']:.3f} measures {search['predicted_ms']:.3f} ms on {plan.runtime} at "
        f"batch {plan.batch} ({search['source']}; target {plan.target_ms:.3f} ms, {tried})"
        + (f": {search['why']}" if search["why"] else ""))
    return search["ratio"], search


def sparsify_2_4(model: nn.Module, job: PruneJob) -> dict[str, Any]:
    """2:4 sparsity on every eligible layer by magnitude, kept through the fine-tune, checked after it."""
    from edgepipe.pruning.channel import recalibrate_batchnorm
    from edgepipe.pruning.sparsity24 import MaskKeeper, follows_2_4, magnitude_masks, require_eligible_layers

    dataset, task = job.dataset, job.task
    layers = require_eligible_layers(model, job.config.ignore_layers, job.spec["name"])
    model.cpu()
    keeper = MaskKeeper(layers, magnitude_masks(layers))
    keeper()
    # Zeroing half the weights shifts activations as removing channels does: re-estimate BatchNorm statistics.
    recalibrated = recalibrate_batchnorm(model, batchnorm_batches(dataset))
    before_finetune = scores(model, dataset, torch.device("cpu"), task)
    tuned = finetune(model, job, label="prune 2:4 fine-tune", after_step=keeper)
    model.cpu()
    keeper()  # fit restores its best epoch's weights: those were masked too, but make it certain
    broken = [name for name, module in layers.items() if not follows_2_4(module.weight)]
    if broken:
        raise RuntimeError(f"2:4 pattern lost during fine-tuning in {broken}")
    sparse_weights = sum(int(module.weight.numel()) for module in layers.values())
    total_weights = sum(int(p.numel()) for name, p in model.named_parameters() if name.endswith("weight"))
    return {"layers": sorted(layers), "score_before_finetune": before_finetune, "finetune": tuned,
            "batchnorm_recalibrated": recalibrated,
            "sparse_weight_fraction": sparse_weights / max(total_weights, 1) / 2}
