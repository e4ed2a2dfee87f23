"""What torch-pruning cannot follow in a backbone, found before or right after it acts, said in one line.

- Channel interleaving (ShuffleNet's channel shuffle, a feature map's channels reshaped into groups): torch-pruning
  either fails building its graph or, worse, maps the channels as if they were not interleaved and removes the
  wrong ones downstream (the pruned model runs and computes something else).
- Window partitions (Swin, MaxViT: a feature map reshaped into windows): torch-pruning's flatten index mapping
  multiplies through them until building the graph fails or exhausts memory (swin_t passed 24 GB).
  Both are found by running the model once and watching its tensor operations.
- Attention: heads are kept whole (see :func:`attention_locked`).
- Anything else torch-pruning raises becomes one line naming the model and its error; errors raised by the
  model's own code stay tracebacks (bugs), and a model that no longer runs after a step is one line too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from importlib import metadata
from typing import NamedTuple

import torch
from torch import nn

from edgepipe.errors import EdgepipeError, first_line

PROJECTION_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)


def torch_pruning_version() -> str:
    return metadata.version("torch-pruning")


def attention_locked(model: nn.Module) -> list[nn.Module]:
    """Layers that keep their output width because attention splits it into heads.

    Heads stay whole and keep their size: narrowing a head changes the softmax scale (SDPA derives it from the
    head size, so the pruned model would compute something else), and torch-pruning 1.6.1's whole-head pruning
    recounts heads at every iterative step and over-prunes. So in an attention module with its own projections
    (timm's qkv -> heads -> proj) every Conv/Linear child but the last (the output projection) is locked: the
    residual width and the MLP hidden width still shrink. ``nn.MultiheadAttention`` (torchvision's ViT) ties the
    residual width to its heads, so it is locked whole and only the MLP hidden widths shrink.
    """
    locked: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            locked.append(module)
        elif isinstance(getattr(module, "num_heads", None), int):
            projections = [child for child in module.children() if isinstance(child, PROJECTION_TYPES)]
            locked.extend(projections[:-1])
    return locked


class Unfollowable(NamedTuple):
    """A layer whose reshapes torch-pruning cannot map channels through, and what to use instead."""

    layer: str
    kind: str
    what: str
    instead: str


SHUFFLE = ("(torch-pruning {version} fails on it, or removes the wrong channels downstream)",
           "a backbone without channel shuffle (e.g. torchvision:mobilenet_v3_small)")
WINDOWS = ("(torch-pruning {version}'s channel index mapping grows without bound through it: it fails, or runs out "
           "of memory building its graph)", "a backbone without window attention (e.g. timm:vit_tiny_patch16_224 or "
           "torchvision:convnext_tiny)")


def _splits_channels(source: torch.Tensor, result: torch.Tensor) -> bool:
    """(N, C, H, W) -> (N, G, C/G, H, W): a feature map's channels regrouped, the first half of a shuffle.
    Only image feature maps: in a 3-D tensor dim 1 may be tokens, and (B, L, C) -> (B, H, W, C) is no shuffle."""
    if source.dim() != 4 or result.dim() != 5:
        return False
    n, c, h, w = source.shape
    groups, per_group = result.shape[1], result.shape[2]
    return (result.shape[0] == n and tuple(result.shape[3:]) == (h, w) and groups * per_group == c
            and groups > 1 and per_group > 1)


def _partitions_windows(source: torch.Tensor, result: torch.Tensor) -> bool:
    """(B, H, W, C) -> (B, H/s, s, W/s, s, C), or channels first: a feature map cut into windows (Swin, MaxViT)."""
    if source.dim() != 4 or result.dim() != 6 or result.shape[0] != source.shape[0]:
        return False
    s, r = tuple(source.shape), tuple(result.shape)
    channels_last = r[1] * r[2] == s[1] and r[3] * r[4] == s[2] and r[5] == s[3]
    channels_first = r[1] == s[1] and r[2] * r[3] == s[2] and r[4] * r[5] == s[3]
    return channels_last or channels_first


def _unfollowable_op(func, args: tuple, result: object) -> tuple[str, str] | None:
    """(what the operation does, what to use instead) when torch-pruning cannot follow channels through it."""
    if "channel_shuffle" in getattr(func, "__name__", ""):
        return f"shuffles channels {SHUFFLE[0]}", SHUFFLE[1]
    if not (args and isinstance(args[0], torch.Tensor) and isinstance(result, torch.Tensor)):
        return None
    if _splits_channels(args[0], result):
        return f"reshapes channels into groups, a channel shuffle or split {SHUFFLE[0]}", SHUFFLE[1]
    if _partitions_windows(args[0], result):
        return f"cuts the feature map into windows {WINDOWS[0]}", WINDOWS[1]
    return None


@torch.no_grad()
def unfollowable_layer(model: nn.Module, example: torch.Tensor) -> Unfollowable | None:
    """The first layer whose forward shuffles channels or cuts the feature map into windows, or None.

    One forward pass under a TorchFunctionMode sees every tensor operation, so a shuffle written inline in a
    model's forward is found as well as ``nn.ChannelShuffle``; module hooks say which layer ran it.
    """
    from torch.overrides import TorchFunctionMode

    running: list[tuple[str, nn.Module]] = []
    found: list[Unfollowable] = []

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if not found and running:
                unfollowable = _unfollowable_op(func, args, result)
                if unfollowable:
                    layer, module = running[-1]
                    found.append(Unfollowable(layer or "(the model)", type(module).__name__, *unfollowable))
            return result

    def enter(layer: str, module: nn.Module) -> None:
        running.append((layer, module))

    def leave(*_) -> None:  # a forward hook returning something would replace the layer's output
        running.pop()

    handles = []
    for layer, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, a, layer=layer: enter(layer, m)))
        handles.append(module.register_forward_hook(leave))
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with Watch():
            model(example.to(device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    if not found:
        return None
    return found[0]._replace(what=found[0].what.format(version=torch_pruning_version()))


def _raised_in_torch_pruning(exc: BaseException) -> str | None:
    """The torch-pruning function that raised ``exc`` (frames inside torch itself skipped), else None: an error
    raised by the model's own code (or edgepipe's) is a bug and keeps its traceback."""
    import torch_pruning

    torch_dir = os.path.dirname(torch.__file__) + os.sep
    pruning_dir = os.path.dirname(torch_pruning.__file__) + os.sep
    frames = []
    traceback = exc.__traceback__
    while traceback is not None:
        frames.append(traceback.tb_frame.f_code)
        traceback = traceback.tb_next
    for code in reversed(frames):
        if code.co_filename.startswith(torch_dir):
            continue
        return code.co_name if code.co_filename.startswith(pruning_dir) else None
    return None


@contextlib.contextmanager
def torch_pruning_errors(model_name: str, doing: str | Callable[[], str], advice: str):
    """An exception raised inside torch-pruning becomes one line naming the model, the error and what to do
    (``doing`` may be a callable: what was under way when it failed, e.g. which layer's channels)."""
    try:
        yield
    except EdgepipeError:
        raise
    except Exception as exc:
        where = _raised_in_torch_pruning(exc)
        if where is None:
            raise
        doing = doing() if callable(doing) else doing
        raise EdgepipeError(f"model '{model_name}': torch-pruning {torch_pruning_version()} failed while {doing} "
                            f"({type(exc).__name__} in {where}: {first_line(exc)[:160]}); {advice}") from None


@torch.no_grad()
def check_still_runs(model: nn.Module, model_name: str, example: torch.Tensor, advice: str) -> None:
    """A forward pass after a step: torch-pruning can narrow a layer whose width the model's code assumes (a
    reshape to a stored size), and that shows here as a shape error rather than later in export or training."""
    try:
        model(example)
    except RuntimeError as exc:
        raise EdgepipeError(f"model '{model_name}': after torch-pruning {torch_pruning_version()} removed channels "
                            f"the model no longer runs ({first_line(exc)[:160]}); {advice}") from None
