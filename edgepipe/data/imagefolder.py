"""A directory of images, as users bring it (torchvision's ImageFolder layout), streamed rather than loaded.

Two layouts: class sub-folders, split train/val/test by seed (stratified); or ``train/ val/ test/`` folders of
class sub-folders (ImageNet style), taken as given. Only file names are listed here; a header check of every
file catches a non-image before training starts, and pixels are decoded batch by batch (:mod:`.files`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.data.base import Dataset, split_three_ways
from edgepipe.data.files import FileSplit
from edgepipe.data.images import IMAGE_SUFFIXES, open_image, view_record
from edgepipe.data.paths import files_inside
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import DatasetConfig

SPLIT_FOLDERS = ("train", "val", "test")
STATISTICS_SAMPLES = 256  # training images the per-channel mean/std are measured on


def _class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files_of(folder: Path, classes: list[str], root: Path) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for index, name in enumerate(classes):
        found = sorted(p for p in (folder / name).rglob("*") if p.is_file() and not p.name.startswith("."))
        files_inside(found, root, "image")
        for file in found:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                raise EdgepipeError(f"{file}: not an image file (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")
        files.extend(found)
        labels.extend([index] * len(found))
    _check_headers(files)
    return files, labels


def _check_headers(files: list[Path]) -> None:
    """Open every file's header (cheap: no pixels): a renamed text file fails here, with its name."""
    for file in files:
        with open_image(file):
            pass


def _layout(root: Path) -> str:
    present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
    if not present:
        return "class-folders"
    if "train" not in present or len(present) < 2:
        raise EdgepipeError(f"{root}: has {'/'.join(present)}/ but not train/ with val/ or test/; use train/ val/ "
                            "test/ folders of class sub-folders, or class sub-folders only")
    return "split-folders"


def _given_splits(root: Path, config: DatasetConfig) -> tuple[list[str], dict[str, tuple[list[Path], list[int]]]]:
    classes = _class_folders(root / "train")
    splits = {}
    for name in SPLIT_FOLDERS:
        if not (root / name).is_dir():
            continue
        extra = sorted(set(_class_folders(root / name)) - set(classes))
        if extra:
            raise EdgepipeError(f"{root / name}: class folder(s) {extra} are not in train/")
        splits[name] = _files_of(root / name, classes, root)
    if "val" not in splits or "test" not in splits:  # carve the missing one from train, seeded and stratified
        files, labels = splits["train"]
        missing = "val" if "val" not in splits else "test"
        fraction = config.val_fraction if missing == "val" else config.test_fraction
        index = np.arange(len(files))
        keep, carved = _two_way(index, np.asarray(labels), fraction, config.split_seed)
        splits["train"] = ([files[i] for i in keep], [labels[i] for i in keep])
        splits[missing] = ([files[i] for i in carved], [labels[i] for i in carved])
    return classes, splits


def _two_way(index: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    keep, carved = train_test_split(index, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(keep), np.sort(carved)


def _seeded_splits(root: Path, config: DatasetConfig) -> tuple[list[str], dict[str, tuple[list[Path], list[int]]]]:
    classes = _class_folders(root)
    if len(classes) < 2:
        raise EdgepipeError(f"{root}: found {len(classes)} class folder(s); need at least 2 sub-folders of images")
    files, labels = _files_of(root, classes, root)
    for index, name in enumerate(classes):
        if index not in labels:
            raise EdgepipeError(f"{root / name}: class folder has no files")
    index = np.arange(len(files))
    train, val, test = split_three_ways(index[:, None], np.asarray(labels, np.int64), seed=config.split_seed,
                                        val_fraction=config.val_fraction, test_fraction=config.test_fraction)
    splits = {}
    for name, split in zip(SPLIT_FOLDERS, (train, val, test), strict=True):
        chosen = np.sort(split.x[:, 0])
        splits[name] = ([files[i] for i in chosen], [labels[i] for i in chosen])
    return classes, splits


def _statistics(files: list[Path], geometry: dict, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean/std on the [0, 1] scale of a seeded sample of training images (never val or test)."""
    from edgepipe.data.images import read_image

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), size=min(STATISTICS_SAMPLES, len(files)), replace=False)
    images = np.stack([read_image(files[i], geometry) for i in np.sort(chosen)]).astype(np.float64) / 255.0
    return images.mean(axis=(0, 2, 3)).tolist(), (images.std(axis=(0, 2, 3)) + 1e-6).tolist()


def load_imagefolder(config: DatasetConfig) -> Dataset:
    if not config.path:
        raise EdgepipeError("dataset 'imagefolder' needs dataset.path: a directory with one sub-folder per class")
    root = Path(config.path).expanduser()
    if not root.is_dir():
        raise EdgepipeError(f"dataset.path {root} is not a directory")
    layout = _layout(root)
    classes, splits = (_given_splits if layout == "split-folders" else _seeded_splits)(root, config)
    for name, (files, _) in splits.items():
        if not files:
            raise EdgepipeError(f"{root}: the {name} split has no images")
    channels = config.channels or 3
    size = list(config.image_size or (32, 32))
    geometry = {"channels": channels, "size": size, **({"resize": config.resize} if config.resize else {}),
                **view_record(config)}
    if config.mean is not None:
        mean, std = list(config.mean), list(config.std)
    else:
        mean, std = _statistics(splits["train"][0], geometry, config.split_seed)
    preprocessing = {"kind": "image", "layout": "NCHW", **geometry, "scale": 1 / 255.0, "mean": mean, "std": std}
    made = {name: FileSplit(root, files, np.asarray(labels, np.int64), preprocessing, workers=config.workers,
                            augment=config.augment if name == "train" else None)
            for name, (files, labels) in splits.items()}
    return Dataset("imagefolder", made["train"], made["val"], made["test"], classes, preprocessing, layout=layout)
