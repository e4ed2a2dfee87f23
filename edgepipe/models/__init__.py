"""The model zoo, torchvision/timm backbones by name (`torchvision:resnet18`, `timm:mobilenetv3_large_100`), plus
any `package.module:callable` so users bring their own models.

A model is described by a JSON-able *spec* (name, params, input shape, classes). Checkpoints hold only
tensors; the spec in the manifest rebuilds the module, so loading never unpickles code.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch import nn

from edgepipe.errors import EdgepipeError
from edgepipe.models.autoencoder import ConvAutoencoder
from edgepipe.models.cnn import VGG, LeNet5
from edgepipe.models.detector import CenterNet
from edgepipe.models.mlp import MLP
from edgepipe.models.mobilenet import MobileNetV2
from edgepipe.models.recurrent import RecurrentClassifier
from edgepipe.models.resnet import ResNet
from edgepipe.trust import MODEL_REGISTRIES


def _recurrent(cell: str):
    def build(input_shape, num_classes, **params):
        return RecurrentClassifier(input_shape, num_classes, cell=cell, **params)

    return build


# A plain lookup table (no decorator registry): name -> builder(input_shape, num_classes, **params).
ZOO = {
    "mlp": MLP,
    "lenet5": LeNet5,
    "resnet": ResNet,
    "vgg": VGG,
    "mobilenetv2": MobileNetV2,
    "lstm": _recurrent("lstm"),
    "gru": _recurrent("gru"),
    "conv-autoencoder": ConvAutoencoder,  # task: reconstruction
    "centernet": CenterNet,  # task: detection
}


def import_callable(path: str):
    """The callable a recipe names (``package.module:callable``); import problems are one line."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise EdgepipeError(f"model '{path}': an import path is 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EdgepipeError(f"model '{path}': cannot import module '{module_name}' ({exc})") from None
    except Exception as exc:  # the user's package broke while importing (a CUDA build next to a CPU torch, ...)
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise EdgepipeError(f"model '{path}': importing '{module_name}' failed ({type(exc).__name__}: {detail})"
                            ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise EdgepipeError(f"model '{path}': module '{module_name}' has no attribute '{attribute}'") from None


def _call_user_builder(builder, input_shape, num_classes, params):
    """Pass input_shape/num_classes only when the user's callable accepts them."""
    accepted = inspect.signature(builder).parameters
    kwargs = dict(params)
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    if "num_classes" in accepted or takes_all:
        kwargs.setdefault("num_classes", num_classes)
    if "input_shape" in accepted:
        kwargs.setdefault("input_shape", tuple(input_shape))
    return builder(**kwargs)


def is_registry_model(name: str) -> bool:
    """``torchvision:NAME`` or ``timm:NAME``: built from the library's registry, with its own initialization."""
    return name.partition(":")[0] in MODEL_REGISTRIES and ":" in name


def _registry_params(name: str, input_shape: tuple[int, ...], params: dict[str, Any]) -> dict[str, Any]:
    """What a registry builder must be told about the input: channels (timm), a transformer's image size."""
    registry, _, model_name = name.partition(":")
    params = dict(params)
    if len(input_shape) != 3:
        raise EdgepipeError(f"model '{name}' takes images (C, H, W); this dataset gives samples of shape "
                            f"{tuple(input_shape)}")
    channels, height, _ = input_shape
    transformer = any(family in model_name for family in ("vit", "deit", "swin", "maxvit", "beit", "eva"))
    if registry == "timm":
        params.setdefault("in_chans", channels)
        if transformer:
            params.setdefault("img_size", height)
    else:
        if channels != 3:
            raise EdgepipeError(f"model '{name}' takes RGB images (3 channels); set dataset.channels: 3")
        if transformer and model_name.startswith("vit"):
            params.setdefault("image_size", height)
    return params


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Build an (untrained) module from a spec: {"name", "params", "input_shape", "num_classes"}."""
    name, params = spec["name"], dict(spec.get("params") or {})
    input_shape, num_classes = tuple(spec["input_shape"]), int(spec["num_classes"])
    try:
        if is_registry_model(name):
            from edgepipe.models.backbones import build_backbone

            model = build_backbone(name, num_classes, _registry_params(name, input_shape, params))
        elif ":" in name:
            model = _call_user_builder(import_callable(name), input_shape, num_classes, params)
        elif name in ZOO:
            model = ZOO[name](input_shape, num_classes, **params)
        else:
            raise EdgepipeError(
                f"unknown model '{name}'; known: {', '.join(ZOO)}, or a 'package.module:callable' import path"
            )
    except TypeError as exc:
        raise EdgepipeError(f"model '{name}': bad params {params} ({exc})") from None
    if not isinstance(model, nn.Module):
        raise EdgepipeError(f"model '{name}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def initialize(model: nn.Module, scheme: str) -> None:
    """Kaiming (He) init for ReLU nets, Xavier (Glorot) for tanh/sigmoid-style nets; BN starts as identity."""
    if scheme == "default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    init_head = getattr(model, "init_head", None)  # a detector's heatmap starts at its prior, not at p = 0.5
    if callable(init_head):
        init_head()


def classifier_of(model: nn.Module) -> nn.Module | None:
    """The final classification layer (zoo models name it `classifier`; torchvision uses fc/heads, timm says)."""
    get_classifier = getattr(model, "get_classifier", None)  # timm's own answer
    if callable(get_classifier):
        layer = get_classifier()
        if isinstance(layer, nn.Module) and any(True for _ in layer.parameters()):
            return layer
    for name in ("classifier", "fc", "head", "heads"):
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Module):
            return layer
    return None


__all__ = ["ZOO", "build_model", "import_callable", "classifier_of", "initialize", "is_registry_model"]
