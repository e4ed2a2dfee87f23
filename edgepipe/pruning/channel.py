"""Structured channel pruning on torch-pruning's dependency graph: which layers, how much, by which importance.

The dependency graph couples every layer that must lose the same channels (a residual add ties a block's
output to its shortcut; a depthwise conv follows its input), so removed channels really leave the graph and
the exported ONNX gets narrower convolutions: the MAC reduction is real, not a mask.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable
from importlib import metadata

import torch
from torch import nn

from edgepipe.complexity import count_macs_params
from edgepipe.errors import EdgepipeError
from edgepipe.models import classifier_of
from edgepipe.pruning.limits import attention_locked, check_still_runs, torch_pruning_errors, unfollowable_layer
from edgepipe.pruning.replay import example_input

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
MAX_RATIO = 0.95  # never search past this: a layer keeps at least a sliver of its channels
SEARCH_GRID, SEARCH_ITERATIONS = 10, 8  # search_ratio's coarse scan, then its bisection steps


@dataclasses.dataclass(frozen=True)
class ChannelOptions:
    """How channels are chosen and counted, whatever the ratio: the importance, global or per-layer ranking, the
    multiple kept channel counts round to, the layers never pruned, and the model's name for error lines."""

    importance: str = "l1"
    global_pruning: bool = False
    round_to: int = 8
    ignored: tuple[str, ...] = ()
    model_name: str = "model"

    @classmethod
    def of(cls, config, model_name: str) -> ChannelOptions:
        """The options a PruneConfig asks for."""
        return cls(config.importance, config.global_pruning, config.round_to, tuple(config.ignore_layers), model_name)


def _importance(name: str):
    import torch_pruning as tp

    table = {
        "l1": lambda: tp.importance.MagnitudeImportance(p=1),
        "l2": lambda: tp.importance.MagnitudeImportance(p=2),
        "bn_scale": lambda: tp.importance.BNScaleImportance(),
        "taylor": lambda: tp.importance.TaylorImportance(),
    }
    return table[name]()


def check_prunable(model: nn.Module, model_name: str, importance: str, input_shape=None) -> None:
    """Refuse, with the reason, the models torch-pruning cannot shrink correctly (``input_shape`` given: also
    those whose forward shuffles channels or cuts windows, found by running it once)."""
    version = metadata.version("torch-pruning")
    found = unfollowable_layer(model, example_input(input_shape)) if input_shape is not None else None
    if found:
        raise EdgepipeError(f"model '{model_name}' is not prunable by channels: its {found.kind} layer '{found.layer}' "
                            f"{found.what}; use --method 2:4, or {found.instead}")
    recurrent = [(name, type(module).__name__) for name, module in model.named_modules()
                 if isinstance(module, nn.RNNBase)]
    if recurrent:
        name, kind = recurrent[0]
        raise EdgepipeError(
            f"model '{model_name}' is not prunable by channels: its {kind} layer '{name}' cannot be narrowed with "
            f"torch-pruning {version} (its nn.LSTM pruner slices the gate weights wrongly and fails, and there is "
            "no nn.GRU pruner); train a smaller hidden size instead"
        )
    if importance == "bn_scale" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise EdgepipeError(f"importance 'bn_scale' ranks channels by BatchNorm scales, and model '{model_name}' has "
                            "no BatchNorm layer; use --importance l1, l2 or taylor")


def output_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The layer producing the logits: the zoo's `classifier` (or fc/head), else the last Linear/Conv."""
    named = dict(model.named_modules())
    classifier = classifier_of(model)
    if classifier is not None:
        return next(name for name, module in named.items() if module is classifier), classifier
    last = [(name, module) for name, module in named.items() if isinstance(module, PRUNABLE_TYPES)]
    return last[-1] if last else None


def prunable_layer_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, PRUNABLE_TYPES)]


def resolve_ignored(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """The output layer plus the user's layers, by module name (unknown names are user errors)."""
    named = dict(model.named_modules())
    unknown = [name for name in names if name not in named or name == ""]
    if unknown:
        known = prunable_layer_names(model)
        shown = ", ".join(known[:8]) + (f", ... ({len(known)} in all)" if len(known) > 8 else "")
        raise EdgepipeError(f"ignore_layers: no layer named '{unknown[0]}' in this model; layers: {shown}")
    ignored = {name: named[name] for name in names}
    output = output_layer(model)
    if output is not None:
        ignored.setdefault(*output)
    return ignored


# torch-pruning has no public rounding hook: BasePruner._prune asks its private ``_round_to(n_pruned,
# current_channels, round_to)`` how many channels to remove (torch_pruning/pruner/algorithms/base_pruner.py).
# This function is the one place that overrides it; tests/unit/test_prune_channel.py fails when upstream renames it.
ROUNDING_HOOK = "_round_to"


@functools.lru_cache(maxsize=1)
def rounding_pruner() -> type:
    """A torch-pruning BasePruner that rounds kept channels to the *nearest* multiple of round_to.

    torch-pruning rounds the kept channels *down*: removing one channel of 32 with round_to=8 keeps 24,
    and a 6-channel conv would keep 0 and silently turn into zeros. Here the kept count is rounded to
    the nearest multiple, and a layer keeps at least ``round_to`` channels (all of them when it has fewer).
    """
    import torch_pruning as tp

    def removed(self, n_pruned: int, current_channels: int, round_to: int) -> int:
        kept = int((current_channels - n_pruned) / round_to + 0.5) * round_to
        kept = min(max(kept, min(round_to, current_channels)), current_channels)
        return current_channels - kept

    return type("RoundingPruner", (tp.pruner.BasePruner,), {ROUNDING_HOOK: removed})


def build_pruner(model: nn.Module, input_shape, options: ChannelOptions, *, ratio: float, steps: int):
    was_training = model.training
    model.eval()  # tracing runs a forward pass; keep BatchNorm statistics untouched
    importance, round_to, model_name = options.importance, options.round_to, options.model_name
    with torch_pruning_errors(model_name, "tracing its dependency graph",
                               "use --method 2:4 (it needs no graph), or a plainer backbone"):
        pruner = rounding_pruner()(
            model, example_input(input_shape), importance=_importance(importance),
            global_pruning=options.global_pruning,
            pruning_ratio=ratio, max_pruning_ratio=MAX_RATIO, iterative_steps=steps,
            ignored_layers=[*resolve_ignored(model, list(options.ignored)).values(), *attention_locked(model)],
            round_to=round_to if round_to > 1 else None,
        )
    model.train(was_training)
    pruner.model_name, pruner.input_shape = model_name, tuple(input_shape)  # for pruning_step's one-line errors
    return pruner


def taylor_gradients(model: nn.Module, batches: list[Callable[[nn.Module], torch.Tensor]]) -> None:
    """Taylor importance reads weight * grad: accumulate the task's loss gradient over a few training batches
    (each batch is a callable giving the loss of the model on it, so any task's loss fits). The model runs as it
    trains, since the loss reads its training outputs (a detector's raw maps, not its decoded boxes), but with
    BatchNorm statistics and dropout frozen: the gradients describe the model being pruned, unchanged."""
    was_training = model.training
    model.train()
    for module in model.modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)):
            module.eval()
    model.zero_grad(set_to_none=True)
    for loss_of in batches:
        loss_of(model).backward()
    model.train(was_training)


def pruning_step(pruner, model: nn.Module, importance: str,
                 gradient_batches: Callable[[], list[Callable[[nn.Module], torch.Tensor]]] | None) -> None:
    """One iterative step of ``pruner`` (gradients first when the importance needs them)."""
    if importance == "taylor":
        if gradient_batches is None:
            raise ValueError("taylor importance needs gradient batches")
        taylor_gradients(model, gradient_batches())
    was_training = model.training
    model.eval()
    name = getattr(pruner, "model_name", "model")
    layers = {module: layer for layer, module in model.named_modules()}
    pruning: list[str] = []  # the layer whose group is being removed, for the error line

    def doing() -> str:
        return f"removing the channels of '{pruning[-1]}'" if pruning else "ranking channels"

    advice = "leave that layer out with ignore_layers, or use --method 2:4"
    with torch_pruning_errors(name, doing, advice):
        for group in pruner.step(interactive=True):  # what step() does, one group at a time
            pruning.append(layers.get(group[0].dep.target.module, "?"))
            group.prune()
            pruning.clear()
    model.zero_grad(set_to_none=True)
    if getattr(pruner, "input_shape", None) is not None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        check_still_runs(model, name, example_input(pruner.input_shape).to(device),
                         "its code assumes a layer's width: leave the layers feeding that reshape out with "
                         "ignore_layers, or use --method 2:4")
    model.train(was_training)


def one_shot_macs(model: nn.Module, input_shape, ratio: float, options: ChannelOptions,
                  gradient_batches=None) -> int:
    """MACs of a copy of ``model`` pruned at ``ratio`` in one step (the model itself is untouched)."""
    trial = copy.deepcopy(model).cpu()
    pruner = build_pruner(trial, input_shape, options, ratio=ratio, steps=1)
    pruning_step(pruner, trial, options.importance, gradient_batches)
    return count_macs_params(trial, input_shape)[0]


def search_ratio(model: nn.Module, input_shape, target_macs: float, options: ChannelOptions,
                 gradient_batches=None) -> tuple[float, float, float | None]:
    """The smallest channel ratio whose one-shot pruned model keeps at most ``target_macs`` of the MACs, that
    fraction, and the nearest fraction over the target any ratio tried kept (None: none did): (ratio,
    achieved_fraction, next_above). A wide gap between the last two says the target sits between two steps of the
    rounded channel counts, so the model keeps fewer MACs than asked.

    MACs are not monotonic in the ratio: channels are rounded (``round_to``), and torch-pruning leaves a layer
    alone once a ratio would take all its channels, so on LeNet with ``round_to: 1`` ratio 0.8 keeps 7 % of the
    MACs and 0.95 keeps 87 %. A bisection from the largest ratio would call the target impossible. So a coarse
    scan over SEARCH_GRID ratios finds the first one that meets the target, and bisection refines between it and
    the scan point before it (where MACs did not yet meet it).
    """
    base = count_macs_params(model, input_shape)[0]
    seen: dict[float, float] = {}

    def fraction(ratio: float) -> float:
        if ratio not in seen:
            seen[ratio] = one_shot_macs(model, input_shape, ratio, options, gradient_batches) / base
        return seen[ratio]

    points = [MAX_RATIO * (i + 1) / SEARCH_GRID for i in range(SEARCH_GRID)]
    first = next((i for i, ratio in enumerate(points) if fraction(ratio) <= target_macs), None)
    if first is None:
        best = min(seen, key=seen.get)
        raise EdgepipeError(f"target_macs {target_macs}: no channel ratio up to {MAX_RATIO:.0%} keeps that few MACs; "
                            f"the fewest is {seen[best]:.1%} (ratio {best:.2f}): ask for {seen[best]:.2f} or more, "
                            "or ignore fewer layers")
    low, high = (points[first - 1] if first else 0.0), points[first]
    high_fraction = fraction(high)
    for _ in range(SEARCH_ITERATIONS):
        middle = (low + high) / 2
        achieved = fraction(middle)
        if achieved <= target_macs:
            high, high_fraction = middle, achieved
        else:
            low = middle
    above = [kept for kept in seen.values() if kept > target_macs]
    return high, high_fraction, (min(above) if above else None)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs, *, batch_size: int = 128) -> bool:
    """Re-estimate BatchNorm running statistics on ``inputs`` (forward passes only, no weight changes).

    Removing channels shifts every later layer's input distribution, and the stored running statistics
    no longer match it: a ResNet pruned by a quarter can fall to chance accuracy until fine-tuning moves
    them. Recomputing them (as EagleEye's "adaptive BN" does) makes the before-fine-tune accuracy
    meaningful and the only pruned model usable when fine-tuning is off. Returns False without BatchNorm.
    ``inputs`` is a tensor, or an iterable of batches (a streamed split's, so a folder is never held whole).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    saved = [(m.momentum, m.training) for m in norms]
    was_training = model.training
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
        norm.train()
    device = next(model.parameters()).device
    batches = ((inputs[start:start + batch_size] for start in range(0, len(inputs), batch_size))
               if isinstance(inputs, torch.Tensor) else inputs)
    for batch in batches:
        model(torch.as_tensor(batch).to(device))
    for norm, (momentum, training) in zip(norms, saved, strict=True):
        norm.momentum = momentum
        norm.train(training)
    model.train(was_training)
    return True
