"""Depth pruning: remove whole residual blocks whose shortcut is the identity, ranked by what each costs on val.

On a CPU runtime a small network's latency is per layer (a conv costs ~16-24 us at batch 1 whatever its width,
issue 30), so removing a block buys latency that narrowing channels does not. A block is removable when its output
is ``x + F(x)`` or ``act(x + F(x))`` with an identity shortcut and the same input and output shape: replacing the
whole module by ``nn.Identity`` then leaves a valid network. For ``act(x + F(x))`` (ResNet's ReLU after the add)
the block's input is already the previous block's (or the stem's) ReLU output, so ``relu(x) == x`` and the identity
is exact for the shortcut path: removing the block is the same as ``F(x) = 0``.

Blocks are recognised by class and attribute in one plain table (:data:`BLOCK_KINDS`), and every claim is checked by
running the model once: a block whose shortcut the table calls identity but whose shape changes is an unknown
variant and fails loudly; one whose shape changes has a projection shortcut (or none) and is refused with why.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from edgepipe.errors import EdgepipeError
from edgepipe.pruning.replay import example_input


class BlockKind(NamedTuple):
    identity: Callable[[nn.Module], bool]  # does this instance add its input unchanged?
    otherwise: str  # what it has instead: "projection shortcut" or "no shortcut"


def _is_none(attribute: str) -> BlockKind:
    return BlockKind(lambda block: getattr(block, attribute) is None, "projection shortcut")


def _is_identity(attribute: str) -> BlockKind:
    return BlockKind(lambda block: isinstance(getattr(block, attribute), nn.Identity), "projection shortcut")


def _flag(attribute: str) -> BlockKind:
    return BlockKind(lambda block: bool(getattr(block, attribute)), "no shortcut")


ALWAYS = BlockKind(lambda block: True, "")


# class path -> how to tell whether an instance adds its input unchanged (identity shortcut). Class paths, not
# imports, so
# torchvision and timm stay optional. Upstream attributes relied on (read in the installed sources):
# torchvision/models/resnet.py BasicBlock/Bottleneck `downsample` (None unless stride or width change);
# torchvision/models/mobilenetv2.py, mobilenetv3.py InvertedResidual `use_res_connect`;
# torchvision/models/convnext.py CNBlock (always `result += input`); timm/models/resnet.py BasicBlock/Bottleneck
# `downsample`; timm/models/_efficientnet_blocks.py `has_skip` (stride 1, same width, not noskip);
# timm/models/convnext.py ConvNeXtBlock `shortcut` (nn.Identity unless it downsamples).
# edgepipe has no YOLO-style C2f/C3 bottleneck model (ultralytics models arrive as ONNX through `import`).
BLOCK_KINDS: dict[str, BlockKind] = {
    "edgepipe.models.resnet.BasicBlock": _is_identity("shortcut"),
    "edgepipe.models.mobilenet.InvertedResidual": _flag("use_residual"),
    "torchvision.models.resnet.BasicBlock": _is_none("downsample"),
    "torchvision.models.resnet.Bottleneck": _is_none("downsample"),
    "torchvision.models.mobilenetv2.InvertedResidual": _flag("use_res_connect"),
    "torchvision.models.mobilenetv3.InvertedResidual": _flag("use_res_connect"),
    "torchvision.models.convnext.CNBlock": ALWAYS,
    "timm.models.resnet.BasicBlock": _is_none("downsample"),
    "timm.models.resnet.Bottleneck": _is_none("downsample"),
    "timm.models._efficientnet_blocks.InvertedResidual": _flag("has_skip"),
    "timm.models._efficientnet_blocks.DepthwiseSeparableConv": _flag("has_skip"),
    "timm.models._efficientnet_blocks.UniversalInvertedResidual": _flag("has_skip"),
    "timm.models._efficientnet_blocks.EdgeResidual": _flag("has_skip"),
    "timm.models.convnext.ConvNeXtBlock": _is_identity("shortcut"),
}
KNOWN_KINDS = ("edgepipe resnet/mobilenetv2, torchvision resnet/mobilenet_v2/v3/convnext, "
               "timm resnet/efficientnet/mobilenetv3/convnext")


def kind_of(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


@dataclass(frozen=True)
class Block:
    """A residual block that can be replaced by nn.Identity: its module name, class path and (C, H, W) shape."""

    name: str
    kind: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Refused:
    """A residual block that cannot be removed: ``reason`` is short (refusals group by it), ``detail`` adds shapes."""

    name: str
    kind: str
    reason: str
    detail: str = ""

    def describe(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass
class BlockSurvey:
    input_shape: tuple[int, ...]  # the model's, (C, H, W): removal checks the model still runs on it
    removable: list[Block] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)

    def names(self) -> list[str]:
        return [block.name for block in self.removable]

    def refusal_line(self) -> str:
        """'stages.0, stages.1 change stride or width (projection shortcut); ...' grouped by reason."""
        by_reason: dict[str, list[str]] = {}
        for refused in self.refused:
            by_reason.setdefault(refused.reason, []).append(refused.name)
        return "; ".join(f"{', '.join(names)} {reason if len(names) == 1 else _plural(reason)}"
                         for reason, names in by_reason.items())


def _plural(reason: str) -> str:
    first, _, rest = reason.partition(" ")
    verbs = {"changes": "change", "has": "have", "holds": "hold", "is": "are", "takes": "take"}
    return f"{verbs.get(first, first)} {rest}"


def _candidates(model: nn.Module) -> dict[str, nn.Module]:
    """Modules of a known block kind, outermost only (a block inside a block goes with it)."""
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if kind_of(module) in BLOCK_KINDS and not any(name.startswith(outer + ".") for outer in found):
            found[name] = module
    return found


def _shapes_seen(model: nn.Module, modules: dict[str, nn.Module], example: torch.Tensor) -> dict[str, list]:
    """(input shapes, output shape) of every call of each module in one eval forward pass on ``example``."""
    seen: dict[str, list] = {name: [] for name in modules}

    def recorder(name: str):
        def hook(module, args, output):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            seen[name].append(([tuple(t.shape[1:]) for t in tensors],
                               tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None))
        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in modules.items()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return seen


def survey_blocks(model: nn.Module, input_shape: Sequence[int], ignored: Iterable[str] = ()) -> BlockSurvey:
    """Every residual block of a known kind, removable or refused with why (checked by running the model once)."""
    candidates = _candidates(model)
    ignored = list(ignored)
    seen = _shapes_seen(model, candidates, example_input(input_shape))
    survey = BlockSurvey(tuple(input_shape))
    for name, module in candidates.items():
        kind = kind_of(module)
        calls = seen[name]
        held = [layer for layer in ignored if layer == name or layer.startswith(name + ".")]
        if not calls:
            survey.refused.append(Refused(name, kind, "is not run by the model's forward"))
            continue
        inputs, output = calls[0]
        if len(inputs) != 1 or output is None:
            survey.refused.append(Refused(name, kind, f"takes {len(inputs)} tensor inputs or returns no tensor"))
            continue
        shape_in = inputs[0]
        same_shape = all(ins == [out] for ins, out in calls)
        identity = BLOCK_KINDS[kind].identity(module)
        shapes = f"{list(shape_in)} -> {list(output)}"
        if identity and not same_shape:
            raise EdgepipeError(f"block '{name}' ({kind}) has an identity shortcut by its attributes but maps "
                                f"{shapes}: a variant edgepipe's block table does not know; leave remove_blocks "
                                "unset for this model")
        if not identity:
            reason = (f"changes stride or width ({BLOCK_KINDS[kind].otherwise})" if not same_shape
                      else "has no identity shortcut (built without a skip)")
            survey.refused.append(Refused(name, kind, reason, shapes))
        elif held:
            survey.refused.append(Refused(name, kind, "holds a layer in ignore_layers", held[0]))
        else:
            survey.removable.append(Block(name, kind, tuple(shape_in)))
    return survey


def removable_blocks(model: nn.Module, input_shape: Sequence[int]) -> list[Block]:
    return survey_blocks(model, input_shape).removable


def check_request(survey: BlockSurvey, request: int | list[str], model_name: str) -> None:
    """Refuse in one line what cannot be removed: no removable block, too many, or a name that is not one."""
    if not survey.removable:
        why = survey.refusal_line() or f"it has no residual block of a known kind ({KNOWN_KINDS})"
        raise EdgepipeError(f"model '{model_name}' has no removable block: {why}")
    names = survey.names()
    removable = ", ".join(names)
    if isinstance(request, int):
        if request > len(names):
            raise EdgepipeError(f"remove_blocks {request}: model '{model_name}' has only {len(names)} removable "
                                f"block{'s' if len(names) > 1 else ''} ({removable})")
        return
    refused = {refusal.name: refusal for refusal in survey.refused}
    for name in request:
        if name not in names:
            why = f" ({refused[name].describe()})" if name in refused else ""
            raise EdgepipeError(f"remove_blocks: '{name}' is not a removable block{why}; removable: {removable}")


def survey_depth(model: nn.Module, spec: dict, config) -> BlockSurvey | None:
    """The model's residual blocks when ``config.remove_blocks`` (PruneConfig) asks for some, one line when they
    cannot be had; None when it asks for none. The prune stage and the pipeline's pre-training check both ask here."""
    if config.remove_blocks is None:
        return None
    survey = survey_blocks(model, spec["input_shape"], ignored=config.ignore_layers)
    check_request(survey, config.remove_blocks, spec["name"])
    return survey


def remove_blocks(model: nn.Module, names: Iterable[str], input_shape: Sequence[int]) -> nn.Module:
    """Replace each named block by nn.Identity in place; the model must still run and give the same output shape."""
    names = list(names)
    if not names:
        return model
    example = example_input(input_shape)
    before = _output_shapes(model, example)
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or kind_of(modules[name]) not in BLOCK_KINDS:
            found = kind_of(modules[name]) if name in modules else "no such module"
            raise EdgepipeError(f"cannot remove block '{name}' ({found}): the model code changed since it was "
                                "pruned; prune it again")
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attribute, nn.Identity())
    after = _output_shapes(model, example)
    if after != before:
        raise RuntimeError(f"removing blocks {names} changed the model's output shapes {before} -> {after}")
    return model


def _output_shapes(model: nn.Module, example: torch.Tensor) -> list[tuple[int, ...]]:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = model(example)
    model.train(was_training)
    if isinstance(outputs, dict):  # a detector's named maps
        outputs = list(outputs.values())
    outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
    return [tuple(output.shape) for output in outputs if isinstance(output, torch.Tensor)]


@dataclass(frozen=True)
class BlockCost:
    """The val score with ``block`` alone removed (after BatchNorm recalibration, when given)."""

    block: Block
    score: float


def rank_blocks(model: nn.Module, blocks: Sequence[Block], score_fn: Callable[[nn.Module], float],
                recalibrate: Callable[[nn.Module], object] | None = None) -> list[BlockCost]:
    """Each block's score with it alone removed, best score (cheapest removal) first; ``model`` is untouched.

    ``score_fn(model)`` is the task's score on val, higher is better (one val pass per block); ``recalibrate``
    re-estimates BatchNorm statistics of the trial model first: without it the later blocks' statistics describe
    inputs the removed block no longer produces, and the ranking measures that mismatch, not the block."""
    costs = []
    for block in blocks:
        trial = copy.deepcopy(model)
        parent_name, _, attribute = block.name.rpartition(".")
        setattr(trial.get_submodule(parent_name) if parent_name else trial, attribute, nn.Identity())
        if recalibrate is not None:
            recalibrate(trial)
        costs.append(BlockCost(block, float(score_fn(trial.eval()))))
    order = sorted(range(len(costs)), key=lambda index: (-costs[index].score, index))
    return [costs[index] for index in order]


def choose(ranked: Sequence[BlockCost], request: int | list[str]) -> list[str]:
    """The names to remove: the ``request`` cheapest, or the names asked for (checked by :func:`check_request`)."""
    if isinstance(request, int):
        return [cost.block.name for cost in ranked[:request]]
    return list(dict.fromkeys(request))


@torch.no_grad()
def residual_ratios(model: nn.Module, blocks: Sequence[Block], batches: Iterable) -> dict[str, float]:
    """A cheap proxy for a block's cost: ||block(x) - x|| / ||x|| over a few batches (how much it changes its
    input), from one forward pass per batch."""
    named = dict(model.named_modules())
    sums = {block.name: [0.0, 0.0] for block in blocks}

    def recorder(name: str):
        def hook(module, args, output):
            change, base = sums[name]
            sums[name] = [change + float((output - args[0]).norm()), base + float(args[0].norm())]
        return hook

    handles = [named[block.name].register_forward_hook(recorder(block.name)) for block in blocks]
    was_training = model.training
    try:
        model.eval()
        for batch in batches:
            model(torch.as_tensor(batch))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: change / max(base, 1e-12) for name, (change, base) in sums.items()}


def rank_correlation(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Spearman's rho (ties share their mean rank); None for fewer than 3 pairs or a constant side."""
    if len(first) < 3:
        return None

    def ranks(values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        order = values.argsort(kind="stable")
        result = np.empty(len(values))
        result[order] = np.arange(len(values), dtype=float)
        for value in np.unique(values):  # ties: the mean of their ranks
            tied = values == value
            result[tied] = result[tied].mean()
        return result

    a, b = ranks(first), ranks(second)
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])
