"""MobileNetV2 (Sandler et al. 2018) scaled for small images: inverted residuals, depthwise convolutions."""

from __future__ import annotations

from torch import nn


def _round(channels: float, divisor: int = 8) -> int:
    return max(divisor, int(channels + divisor / 2) // divisor * divisor)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1,
             activation: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if activation:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn(in_channels, hidden, 1, 1))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),  # depthwise
            _conv_bn(hidden, out_channels, 1, 1, activation=False),  # linear bottleneck
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x) if self.use_residual else self.block(x)


class MobileNetV2(nn.Module):
    # (expansion, channels, repeats, stride): the paper's table, shortened for 28x28 inputs.
    SETTINGS = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 1))

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width_mult: float = 1.0,
                 dropout: float = 0.2) -> None:
        super().__init__()
        channels = _round(32 * width_mult)
        layers: list[nn.Module] = [_conv_bn(input_shape[0], channels, 3, 1)]
        for expansion, width, repeats, stride in self.SETTINGS:
            out_channels = _round(width * width_mult)
            for index in range(repeats):
                layers.append(InvertedResidual(channels, out_channels, stride if index == 0 else 1, expansion))
                channels = out_channels
        last = _round(256 * max(1.0, width_mult))
        layers.append(_conv_bn(channels, last, 1, 1))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))
