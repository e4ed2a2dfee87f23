"""Multi-layer perceptron with BatchNorm and dropout."""

from __future__ import annotations

import math

from torch import nn


class MLP(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (256, 128),
                 dropout: float = 0.2, batch_norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size)]
            if batch_norm:
                layers += [nn.BatchNorm1d(size)]
            layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))
