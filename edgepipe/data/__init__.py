"""Datasets by name. Everything ships in a package or is made here: nothing is downloaded at run time."""

from __future__ import annotations

from collections.abc import Callable

from edgepipe.data.base import Dataset, Split
from edgepipe.recipe import DatasetConfig


def _loaders() -> dict[str, Callable[[DatasetConfig], Dataset]]:
    from edgepipe.data.digits import load_digits
    from edgepipe.data.imagefolder import load_imagefolder
    from edgepipe.data.mnist import load_mnist5k, load_seqmnist
    from edgepipe.data.synthetic import load_synthetic

    return {
        "mnist5k": load_mnist5k,
        "seqmnist": load_seqmnist,
        "digits": load_digits,
        "imagefolder": load_imagefolder,
        "synthetic": load_synthetic,
    }


def load_dataset(config: DatasetConfig) -> Dataset:
    return _loaders()[config.name](config)


__all__ = ["Dataset", "Split", "load_dataset"]
