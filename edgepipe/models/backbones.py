"""Backbones users start from: ``torchvision:NAME`` and ``timm:NAME``, with pretrained weights from a local file.

The classifier is built for the dataset's classes (torchvision's ``get_model(..., num_classes=N)``, timm's
``create_model(..., num_classes=N)``), so a manifest's spec rebuilds exactly the trained architecture. Pretrained
weights come only from ``model.weights`` (a ``.pth`` state dict, read tensors-only, or ``.safetensors``): the head
starts fresh (near zero, :func:`fresh_head_init`), and every skipped key is reported. Nothing is
downloaded, ever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgepipe.errors import EdgepipeError, first_line

# the wrappers training scripts save a state dict in (Lightning, timm's train.py, DDP)
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")


def _library(registry: str):
    try:
        if registry == "timm":
            import timm

            return timm
        import torchvision.models

        return torchvision.models
    except ImportError as exc:
        extra = " (pip install 'edgepipe[timm]')" if registry == "timm" else ""
        raise EdgepipeError(f"model '{registry}:...': {registry} is not installed{extra}: {first_line(exc)}") from None
    except Exception as exc:  # a CUDA-built torchvision beside a CPU torch fails with a RuntimeError
        raise EdgepipeError(f"model '{registry}:...': importing {registry} failed ({type(exc).__name__}: "
                            f"{first_line(exc)[:160]}); install a torchvision that matches torch (README, "
                            "Installing)") from None


def check_backbone_name(name: str):
    """The registry library for ``torchvision:NAME`` / ``timm:NAME`` when it has that model (one line when not)."""
    registry, _, model_name = name.partition(":")
    library = _library(registry)
    if registry == "timm":
        if not library.is_model(model_name):
            close = library.list_models(f"*{model_name.split('_')[0]}*")[:8]
            raise EdgepipeError(f"model '{name}': timm has no model '{model_name}'"
                                + (f"; similar: {', '.join(close)}" if close else ""))
        return library
    known = library.list_models(module=library)
    if model_name not in known:
        classifiers = ", ".join(known[:12])
        raise EdgepipeError(f"model '{name}': not a torchvision classification model (e.g. {classifiers}, ...)")
    return library


def build_backbone(name: str, num_classes: int, params: dict[str, Any]) -> nn.Module:
    """A randomly initialized ``torchvision:NAME`` / ``timm:NAME`` model with ``num_classes`` outputs."""
    registry, _, model_name = name.partition(":")
    library = check_backbone_name(name)
    if registry == "timm":
        return library.create_model(model_name, pretrained=False, num_classes=num_classes, **params)
    params = dict(params)
    if model_name in ("googlenet", "inception_v3"):
        params.setdefault("aux_logits", False)  # the auxiliary heads exist only for training from scratch
        params.setdefault("init_weights", True)
    return library.get_model(model_name, weights=None, num_classes=num_classes, **params)


def how_to_save(name: str, path: str) -> str:
    """The command that saves ``name``'s pretrained weights on a machine with internet."""
    registry, _, model_name = name.partition(":")
    if registry == "timm":
        return (f"python -c \"import timm, safetensors.torch as s; s.save_file(timm.create_model('{model_name}', "
                f"pretrained=True).state_dict(), '{path}')\"")
    if registry == "torchvision":
        return (f"python -c \"import torch, torchvision; torch.save(torchvision.models.get_model('{model_name}', "
                f"weights='DEFAULT').state_dict(), '{path}')\"")
    return f"torch.save(model.state_dict(), '{path}') where the model was trained"


def read_weights(path: Path, model_name: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: tensors only (``weights_only=True``; safetensors holds nothing else)."""
    if not path.is_file():
        raise EdgepipeError(f"model.weights {path}: no such file. edgepipe never downloads weights; on a machine "
                            f"with internet, save them with: {how_to_save(model_name, path.name)}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a checkpoint, or one that pickles code
        if type(exc).__name__ == "UnpicklingError":  # weights_only refused a pickled object: never unpickled
            raise EdgepipeError(f"model.weights {path}: a full pickled model (as some detector frameworks save), "
                                "which edgepipe never unpickles; export it to ONNX where it was trained and import "
                                "that file, or save model.state_dict() and name the model's builder as a trusted "
                                "package.module:callable (--trust-code)") from None
        raise EdgepipeError(f"model.weights {path}: not a tensors-only state dict ({type(exc).__name__}: "
                            f"{first_line(exc)[:160]})") from None
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgepipeError(f"model.weights {path}: holds no state dict of tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_pretrained(model: nn.Module, path: Path, model_name: str) -> dict[str, Any]:
    """Copy the file's tensors into ``model`` by name; keys that do not fit are reported, never guessed at."""
    from edgepipe.models import classifier_of

    source = read_weights(Path(path).expanduser(), model_name)
    target = model.state_dict()
    # The classifier belongs to the classes the weights were trained for: it always starts fresh here, even
    # when the class count happens to match (continuing the same task is train.init_from or --resume).
    head = classifier_of(model)
    prefix = next((f"{name}." for name, module in model.named_modules() if module is head and name), None)
    head_keys = {key for key in target if prefix is not None and key.startswith(prefix)}
    loaded = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape and k not in head_keys}
    reshaped = sorted(k for k in source if k in target and (target[k].shape != source[k].shape or k in head_keys))
    unexpected = sorted(k for k in source if k not in target)
    missing = sorted(k for k in target if k not in source and k not in head_keys)
    if not loaded:
        raise EdgepipeError(f"model.weights {path}: none of its {len(source)} tensors matches a layer of "
                            f"'{model_name}' by name and shape (is it another architecture's file?)")
    target.update({k: v.to(target[k].dtype) for k, v in loaded.items()})
    model.load_state_dict(target)
    if head is not None:
        fresh_head_init(head)
    return {"weights": str(path), "loaded_tensors": len(loaded), "model_tensors": len(target),
            "reshaped": reshaped, "missing": missing, "unexpected": unexpected}


def fresh_head_init(head: nn.Module) -> None:
    """Start a new classifier on pretrained features near zero: normal(0, 0.01) weights, zero bias.

    A Kaiming-initialized head on features of a pretrained backbone starts with logits in the tens (loss ~4.6 on
    4 classes), and a frozen backbone's short schedule never recovers; torchvision initializes its MobileNet and
    VGG classifiers this way (``nn.init.normal_(m.weight, 0, 0.01)``), timm's ViT head similarly small."""
    for layer in head.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def describe_load(report: dict[str, Any]) -> str:
    """One line: what loaded, and what did not (the classifier resized for the dataset's classes, typically)."""
    parts = [f"{report['loaded_tensors']}/{report['model_tensors']} tensors from {report['weights']}"]
    for key, what in (("reshaped", "classifier for these classes (initialized fresh)"), ("missing", "missing"),
                      ("unexpected", "not in the model")):
        names = report[key]
        if names:
            shown = ", ".join(names[:4]) + (f" +{len(names) - 4}" if len(names) > 4 else "")
            parts.append(f"{what}: {shown}")
    return "; ".join(parts)
