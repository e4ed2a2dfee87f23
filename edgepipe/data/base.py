"""Datasets with fixed, seeded train/val/test splits, in memory (the shipped sets) or streamed from files.

The test split is held out: training and checkpoint selection see only train and val.
``preprocessing`` records how a raw input becomes a model input, so `infer` and a deploy bundle can
apply the same steps to real image files without the training code.

Every consumer reads a split through the same few methods (``batches``, ``take``, ``train_batches``), so a
folder of 20,000 photos (:class:`edgepipe.data.files.FileSplit`) is never held in memory whole, while the
small built-in sets stay arrays (:class:`Split`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from edgepipe.errors import EdgepipeError

EVAL_INPUT_BYTES = 32 << 20  # float32 input per evaluation batch: 512 digits, or 55 images at 224x224


def eval_batch_size(sample_shape: Sequence[int], most: int = 512) -> int:
    """Evaluation batches sized by bytes, not count: a network's activations grow with its input, and 512 images
    at 224x224 held ~1.5 GB of mobilenet_v3_small activations, the peak of a whole train run on a photo folder."""
    per_sample = 4 * int(np.prod([int(side) for side in sample_shape]))
    return max(1, min(most, EVAL_INPUT_BYTES // max(per_sample, 1)))


@dataclass
class Split:
    """A split held in memory as arrays."""

    x: np.ndarray  # float32, model-ready (normalized)
    y: np.ndarray  # int64 class indices

    def __len__(self) -> int:
        return len(self.y)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """The model inputs in order, ``batch_size`` at a time."""
        for start in range(0, len(self.y), batch_size):
            yield self.x[start:start + batch_size]

    def take(self, count: int, index: Sequence[int] | None = None) -> np.ndarray:
        """The first ``count`` inputs (or those at ``index``) as one float32 array: probes, parity, calibration."""
        chosen = self.x[:count] if index is None else self.x[np.asarray(index)]
        return np.ascontiguousarray(chosen, dtype=np.float32)

    def train_batches(self, order: Sequence, *, pin_memory: bool = False) -> Iterator[Any]:
        """Training inputs for each index tensor in ``order`` (augmentation of arrays happens in the loop)."""
        import torch

        inputs = torch.from_numpy(self.x)
        for index in order:
            yield inputs[index]

    def update_fingerprint(self, digest) -> None:
        digest.update(np.ascontiguousarray(self.x).tobytes())
        digest.update(np.ascontiguousarray(self.y).tobytes())


@dataclass
class Dataset:
    name: str
    train: Any  # Split, or data.files.FileSplit: the same methods
    val: Any
    test: Any
    labels: list[str]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    layout: str = "arrays"  # imagefolder: "class-folders" (split by seed) or "split-folders" (train/ val/ test/)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.sample_shape

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """Content hash of every split, so a changed dataset invalidates downstream artifacts."""
        import hashlib

        digest = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            split.update_fingerprint(digest)
        return digest.hexdigest()

    def split_hashes(self) -> dict[str, str]:
        """One hash per split (a file list for a folder), recorded in the train manifest."""
        import hashlib

        hashes = {}
        for name in ("train", "val", "test"):
            digest = hashlib.sha256()
            getattr(self, name).update_fingerprint(digest)
            hashes[name] = digest.hexdigest()
        return hashes


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
