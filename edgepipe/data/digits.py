"""scikit-learn's 8x8 handwritten digits (1,797 real samples, pixel values 0..16)."""

from __future__ import annotations

import numpy as np

from edgepipe.data.base import Dataset, normalize, split_three_ways
from edgepipe.recipe import DatasetConfig

DIGITS_MEAN, DIGITS_STD = 0.3, 0.37  # of pixel/16 over the whole set, rounded


def load_digits(config: DatasetConfig) -> Dataset:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    x = normalize(images, [DIGITS_MEAN], [DIGITS_STD], channel_axis=1)
    train, val, test = split_three_ways(
        x, bunch.target.astype(np.int64), seed=config.split_seed,
        val_fraction=config.val_fraction, test_fraction=config.test_fraction,
    )
    preprocessing = {
        "kind": "image", "layout": "NCHW", "channels": 1, "size": [8, 8],
        "scale": 1 / 255.0, "mean": [DIGITS_MEAN], "std": [DIGITS_STD],
    }
    return Dataset("digits", train, val, test, [str(d) for d in range(10)], preprocessing)
