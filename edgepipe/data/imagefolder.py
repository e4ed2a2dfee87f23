"""A directory of class sub-folders of images: what a real user brings (like torchvision's ImageFolder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.data.base import Dataset, normalize, split_three_ways
from edgepipe.data.images import IMAGE_SUFFIXES, read_image
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import DatasetConfig


def load_imagefolder(config: DatasetConfig) -> Dataset:
    if not config.path:
        raise EdgepipeError("dataset 'imagefolder' needs dataset.path: a directory with one sub-folder per class")
    root = Path(config.path).expanduser()
    if not root.is_dir():
        raise EdgepipeError(f"dataset.path {root} is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise EdgepipeError(f"{root}: found {len(classes)} class folder(s); need at least 2 sub-folders of images")
    channels = config.channels or 3
    size = tuple(config.image_size or (32, 32))
    images, labels = [], []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise EdgepipeError(f"{root / name}: class folder has no files")
        for file in files:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                raise EdgepipeError(f"{file}: not an image file (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")
            images.append(read_image(file, channels, size))
            labels.append(index)
    x = np.stack(images).astype(np.float32) / 255.0
    y = np.asarray(labels, np.int64)
    # Statistics from the whole folder would leak the test split; take them from a seeded training split.
    train, _, _ = split_three_ways(x, y, seed=config.split_seed, val_fraction=config.val_fraction,
                                   test_fraction=config.test_fraction)
    mean = train.x.mean(axis=(0, 2, 3)).tolist()
    std = (train.x.std(axis=(0, 2, 3)) + 1e-6).tolist()
    x = normalize(x, mean, std, channel_axis=1)
    train, val, test = split_three_ways(x, y, seed=config.split_seed, val_fraction=config.val_fraction,
                                        test_fraction=config.test_fraction)
    preprocessing = {"kind": "image", "layout": "NCHW", "channels": channels, "size": list(size),
                     "scale": 1 / 255.0, "mean": mean, "std": std}
    return Dataset("imagefolder", train, val, test, classes, preprocessing)
