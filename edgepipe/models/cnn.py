"""Classic convolutional nets: LeNet-5 and a small VGG."""

from __future__ import annotations

import torch
from torch import nn


def _flat_size(features: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


class LeNet5(nn.Module):
    """LeCun et al. 1998, with ReLU and max pooling as commonly taught; optional BatchNorm."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, batch_norm: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        channels = input_shape[0]
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2), norm(6), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), norm(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(_flat_size(self.features, input_shape), 120), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(84, num_classes)

    def forward(self, x):
        return self.classifier(self.head(self.features(x)))


class VGG(nn.Module):
    """Small VGG: stages of two 3x3 conv-BN-ReLU then 2x2 max pooling; global average pooling head."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...] = (32, 64, 128),
                 dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = input_shape[0]
        for width in widths:
            for _ in range(2):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))
