"""A split streamed from image files through torch's DataLoader: one batch is decoded at a time.

Evaluation reads the recorded preprocessing's fixed view (:func:`edgepipe.data.images.eval_view`); training adds
the recipe's torchvision v2 augmentation. Worker processes decode in parallel (``dataset.workers``), with
pinned host memory when the model trains on CUDA.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.data.images import decode, eval_view, to_model_input
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import AugmentConfig

_WORKER_ERROR = f"{EdgepipeError.__name__}: "  # how a worker's traceback names the error it raised


class AugmentedView:
    """The recipe's torchvision v2 augmentation of a training sample → uint8 CHW array (picklable for workers)."""

    def __init__(self, preprocessing: dict[str, Any], augment: AugmentConfig) -> None:
        from torchvision.transforms import v2

        size = [int(side) for side in preprocessing["size"]]
        if preprocessing.get("resize_mode") == "letterbox":
            raise EdgepipeError("dataset.augment with resize_mode letterbox: augmentation would move the padding; "
                                "drop one of them")
        self.bgr = preprocessing.get("channel_order") == "BGR"
        steps: list[Any] = []
        if augment.random_resized_crop is not None:
            steps.append(v2.RandomResizedCrop(size, scale=tuple(augment.random_resized_crop)))
        elif preprocessing.get("resize"):
            steps.extend([v2.Resize(int(preprocessing["resize"])), v2.CenterCrop(size)])
        else:
            steps.append(v2.Resize(size))
        if augment.rotation:
            steps.append(v2.RandomRotation(augment.rotation))
        if augment.horizontal_flip:
            steps.append(v2.RandomHorizontalFlip(augment.horizontal_flip))
        if augment.color_jitter:
            strength = augment.color_jitter
            steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
        self.transform = v2.Compose([*steps, v2.PILToTensor()])

    def __call__(self, image) -> np.ndarray:
        array = self.transform(image).numpy()
        return np.ascontiguousarray(array[::-1]) if self.bgr and array.shape[0] == 3 else array


def train_view(preprocessing: dict[str, Any], augment: AugmentConfig | None):
    """The augmented view of a training sample, or the eval view when no augmentation is asked for."""
    return eval_view(preprocessing) if augment is None else AugmentedView(preprocessing, augment)


class ImageFiles:
    """A map-style torch dataset over files: index → normalized float32 CHW tensor (picklable for workers)."""

    def __init__(self, files: Sequence[Path], preprocessing: dict[str, Any], view) -> None:
        self.files, self.preprocessing, self.view = list(files), preprocessing, view
        self.channels = int(preprocessing["channels"])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        import torch

        image = self.view(decode(self.files[index], self.channels))
        return torch.from_numpy(to_model_input(image[None], self.preprocessing)[0])


def _reraise_worker_error(exc: Exception) -> None:
    """A worker's one-line EdgepipeError (a corrupt file) arrives wrapped in its traceback: keep the line."""
    text = str(exc)
    if "Original Traceback" in text and _WORKER_ERROR in text:
        raise EdgepipeError(text.rsplit(_WORKER_ERROR, 1)[1].strip().splitlines()[0]) from None
    raise exc


class FileSplit:
    """A split as a list of image files and their labels: nothing is decoded until a batch is asked for."""

    def __init__(self, root: Path, files: Sequence[Path], y: np.ndarray, preprocessing: dict[str, Any], *,
                 augment: AugmentConfig | None = None, workers: int = 0) -> None:
        self.root, self.files, self.y = root, list(files), np.asarray(y, np.int64)
        self.preprocessing, self.augment, self.workers = preprocessing, augment, workers

    def __len__(self) -> int:
        return len(self.y)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (int(self.preprocessing["channels"]), *(int(side) for side in self.preprocessing["size"]))

    def _loader(self, dataset, *, batch_size: int | None = None, batch_sampler=None, pin_memory: bool = False):
        from torch.utils.data import DataLoader

        workers = min(self.workers, max(1, len(dataset) // 64))  # a handful of files is not worth a process
        return DataLoader(dataset, batch_size=batch_size if batch_sampler is None else 1,
                          batch_sampler=batch_sampler, shuffle=False, num_workers=workers, pin_memory=pin_memory)

    def _stream(self, loader) -> Iterator[Any]:
        try:
            yield from loader
        except Exception as exc:  # a worker's error comes back as its own type, its traceback as the text
            _reraise_worker_error(exc)

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """The model inputs in file order, through the eval view, ``batch_size`` at a time."""
        dataset = ImageFiles(self.files, self.preprocessing, eval_view(self.preprocessing))
        for batch in self._stream(self._loader(dataset, batch_size=batch_size)):
            yield batch.numpy()

    def take(self, count: int, index: Sequence[int] | None = None) -> np.ndarray:
        chosen = range(min(count, len(self.files))) if index is None else [int(i) for i in index]
        files = [self.files[i] for i in chosen]
        if not files:
            return np.zeros((0, *self.sample_shape), np.float32)
        subset = FileSplit(self.root, files, self.y[list(chosen)], self.preprocessing, workers=self.workers)
        return np.concatenate(list(subset.batches(256)))

    def train_batches(self, order: Sequence, *, pin_memory: bool = False) -> Iterator[Any]:
        """Augmented training inputs for each index tensor in ``order``, decoded by the DataLoader's workers."""
        dataset = ImageFiles(self.files, self.preprocessing, train_view(self.preprocessing, self.augment))
        sampler = [[int(i) for i in index] for index in order]
        yield from self._stream(self._loader(dataset, batch_sampler=sampler, pin_memory=pin_memory))

    def update_fingerprint(self, digest) -> None:
        """The file list (relative path and size of each file) and labels: a changed folder is a changed split."""
        for file, label in zip(self.files, self.y, strict=True):
            digest.update(f"{file.relative_to(self.root).as_posix()}\0{file.stat().st_size}\0{label}\n".encode())

