"""Datasets by name. Everything ships in a package or is made here: nothing is downloaded at run time."""

from __future__ import annotations

from collections.abc import Callable

from edgepipe.artifacts import Manifest
from edgepipe.data.base import Dataset, Split
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import DatasetConfig


def _loaders() -> dict[str, Callable[[DatasetConfig], Dataset]]:
    from edgepipe.data.canvas import load_mnist_canvas
    from edgepipe.data.detection_files import load_coco, load_yolo
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
        "mnist-canvas": load_mnist_canvas,
        "coco": load_coco,
        "yolo": load_yolo,
    }


def load_dataset(config: DatasetConfig) -> Dataset:
    return _loaders()[config.name](config)


def load_stage_dataset(manifest: Manifest) -> Dataset:
    """Reload the exact splits a stage's model was trained on (its manifest's dataset record), fingerprint checked."""
    record = manifest.dataset
    if record is None:
        raise EdgepipeError(f"the {manifest.stage} manifest has no dataset record; rerun the stage")
    dataset = load_dataset(DatasetConfig.model_validate(record.config))
    if dataset.fingerprint() != record.fingerprint:
        raise EdgepipeError(f"dataset '{dataset.name}' changed since the model was trained (fingerprint differs); "
                            "retrain or restore the data")
    return dataset


__all__ = ["Dataset", "Split", "load_dataset", "load_stage_dataset"]
