"""Datasets as in-memory arrays with fixed, seeded train/val/test splits.

The test split is held out: training and checkpoint selection see only train and val.
``preprocessing`` records how a raw input becomes a model input, so `infer` and a deploy bundle can
apply the same steps to real image files without the training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from edgepipe.errors import EdgepipeError


@dataclass
class Split:
    x: np.ndarray  # float32, model-ready (normalized)
    y: np.ndarray  # int64 class indices

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    labels: list[str]
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """Content hash of every split, so a changed dataset invalidates downstream artifacts."""
        import hashlib

        digest = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            digest.update(np.ascontiguousarray(split.x).tobytes())
            digest.update(np.ascontiguousarray(split.y).tobytes())
        return digest.hexdigest()


def split_three_ways(
    x: np.ndarray, y: np.ndarray, *, seed: int, val_fraction: float, test_fraction: float
) -> tuple[Split, Split, Split]:
    """Stratified train/val/test split, reproducible from ``seed``."""
    if len(y) < 10:
        raise EdgepipeError(f"dataset has only {len(y)} samples; need at least 10 to split train/val/test")
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 3 else None
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=stratify
    )
    val_share = val_fraction / (1.0 - test_fraction)
    stratify_rest = y_rest if stratify is not None else None
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_share, random_state=seed + 1, stratify=stratify_rest
    )
    return Split(x_train, y_train), Split(x_val, y_val), Split(x_test, y_test)


def normalize(x: np.ndarray, mean: list[float], std: list[float], channel_axis: int | None) -> np.ndarray:
    x = x.astype(np.float32)
    if channel_axis is None:
        return (x - mean[0]) / std[0]
    shape = [1] * x.ndim
    shape[channel_axis] = len(mean)
    return (x - np.asarray(mean, np.float32).reshape(shape)) / np.asarray(std, np.float32).reshape(shape)
