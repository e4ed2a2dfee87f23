"""A small, learnable, deterministic dataset for fast tests: class templates plus Gaussian noise."""

from __future__ import annotations

import numpy as np

from edgepipe.data.base import Dataset, split_three_ways
from edgepipe.recipe import DatasetConfig


def load_synthetic(config: DatasetConfig) -> Dataset:
    rng = np.random.default_rng(config.split_seed + 12345)
    shape = tuple(config.shape)
    templates = rng.normal(0.0, 1.0, size=(config.num_classes, *shape)).astype(np.float32)
    y = np.arange(config.samples, dtype=np.int64) % config.num_classes
    x = templates[y] + rng.normal(0.0, 1.0, size=(config.samples, *shape)).astype(np.float32)
    train, val, test = split_three_ways(
        x, y, seed=config.split_seed, val_fraction=config.val_fraction, test_fraction=config.test_fraction
    )
    layout = {3: "NCHW", 2: "NTF"}.get(len(shape), "NF")
    preprocessing = {"kind": "tensor", "layout": layout}
    return Dataset("synthetic", train, val, test, [f"class{i}" for i in range(config.num_classes)], preprocessing)
