"""A user's own model, given to edgepipe by import path (tests.helpers.user_models:tiny_cnn)."""

from torch import nn


def tiny_cnn(num_classes: int, width: int = 8):
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
    )
