"""The runner contract every backend implements (PyTorch, onnxruntime, TensorRT).

A runner names its inputs and outputs (``inputs``, ``outputs``: lists of :class:`TensorSpec`) and maps a
feed ``{input name: array}`` to ``{output name: array}``: a detector's boxes, scores and classes, or a
two-headed model, pass as they are. Evaluation, comparison, benchmarking and ``infer`` are written once
against it, so any two backends can be compared on the same inputs (the Polygraphy idea, without its
scaffolding). A single-input model may be fed a bare array.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe.errors import EdgepipeError

Feed = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # None marks a dynamic axis (the batch axis)
    dtype: str = "float32"

    def shown(self) -> str:
        return "(" + ", ".join("N" if d is None else str(d) for d in self.shape) + ")"


class Runner(ABC):
    """One loaded model on one backend. Use as a context manager."""

    backend: str = "abstract"
    note: str | None = None  # set by the factory when this runner stands in for another (an engine's ONNX)
    source: Path | None = None  # the model file it runs (set by the factory)

    def __init__(self) -> None:
        self._opened = False

    def __enter__(self) -> Runner:
        if not self._opened:
            self.open()
            self._opened = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._opened:
            self.close()
            self._opened = False

    @abstractmethod
    def open(self) -> None: ...

    def close(self) -> None:  # most backends free everything on garbage collection
        return None

    @property
    @abstractmethod
    def inputs(self) -> list[TensorSpec]: ...

    @property
    @abstractmethod
    def outputs(self) -> list[TensorSpec]: ...

    @property
    def input_spec(self) -> TensorSpec:
        """The first input: what a single-input model is fed (a bare array goes there)."""
        return self.inputs[0]

    @property
    def device(self) -> str:
        """Where it runs, for reports ("cpu", "cuda:0 (NVIDIA H100)", ...)."""
        return "cpu"

    @abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def infer(self, feed: Feed | np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch: ``{input name: array}`` (or one array for a single-input model) → ``{output name: array}``."""
        if not self._opened:
            raise RuntimeError(f"{type(self).__name__} used outside its context manager")
        return self._infer(self.prepare(feed))

    def prepare(self, feed: Feed | np.ndarray, *, any_batch: bool = False) -> dict[str, np.ndarray]:
        """The feed as contiguous arrays of each input's dtype, names and shapes checked (one line when wrong).

        ``any_batch``: a whole dataset, to be cut into the model's batches (a fixed batch axis is not checked).
        """
        specs = self.inputs
        if not isinstance(feed, Mapping):
            if len(specs) != 1:
                raise EdgepipeError(f"the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}); "
                                    "feed a dict of arrays by input name")
            feed = {specs[0].name: feed}
        missing = [spec.name for spec in specs if spec.name not in feed]
        unknown = [name for name in feed if name not in {spec.name for spec in specs}]
        if missing or unknown:
            raise EdgepipeError(f"feed names {sorted(feed)} do not match the model's inputs "
                                f"{[spec.name for spec in specs]}")
        prepared = {}
        for spec in specs:
            array = np.ascontiguousarray(feed[spec.name], dtype=spec.dtype)
            check_shape(TensorSpec(spec.name, (None, *spec.shape[1:])) if any_batch else spec, array.shape)
            prepared[spec.name] = array
        return prepared


def check_shape(spec: TensorSpec, shape: tuple[int, ...]) -> None:
    expected = spec.shape
    if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape, strict=False)):
        raise EdgepipeError(f"input shape {tuple(shape)} does not match the model's input '{spec.name}' {spec.shown()}")


def _batch_of(feed: dict[str, np.ndarray]) -> int:
    sizes = {len(array) for array in feed.values()}
    if len(sizes) != 1:
        raise EdgepipeError(f"the inputs disagree on the batch size ({sorted(sizes)})")
    return sizes.pop()


def infer_all(runner: Runner, feed: Feed | np.ndarray, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Run a whole dataset through ``runner`` in chunks: every output, concatenated along the batch axis.

    A model with a fixed batch (a static export, DLA) gets exactly that batch; the tail chunk is padded and
    its padding cut from the outputs.
    """
    if batch_size is None:  # by bytes: 256 photos at 224x224 would hold GBs of activations
        from edgepipe.data.base import eval_batch_size

        first = next(iter(feed.values())) if isinstance(feed, Mapping) else feed
        shape = feed.sample_shape if hasattr(feed, "sample_shape") else np.shape(first)[1:]
        batch_size = eval_batch_size(shape, most=256)
    if hasattr(feed, "batches"):  # a split (edgepipe.data): streamed, one batch of inputs in memory at a time
        parts: dict[str, list[np.ndarray]] = {}
        for batch in feed.batches(batch_size):
            for name, output in infer_all(runner, batch, batch_size).items():
                parts.setdefault(name, []).append(output)
        return {name: np.concatenate(values) for name, values in parts.items()}
    feed = runner.prepare(feed, any_batch=True)
    total = _batch_of(feed)
    fixed = runner.input_spec.shape[0]
    step = fixed if fixed is not None else batch_size
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, total, step):
        chunk = {name: array[start:start + step] for name, array in feed.items()}
        count = len(next(iter(chunk.values())))
        if fixed is not None and count < fixed:  # pad the tail for static-batch models
            chunk = {name: np.concatenate([array, np.zeros((fixed - count, *array.shape[1:]), array.dtype)])
                     for name, array in chunk.items()}
        for name, output in runner.infer(chunk).items():
            chunks.setdefault(name, []).append(output[:count])
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def infer_in_batches(runner: Runner, inputs: Feed | np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The one array the task scores, over a whole dataset: a classifier's logits, an autoencoder's images, a
    detector's boxes, scores and classes packed as [N, K, 6] (:func:`edgepipe.device.scoring.model_outputs`)."""
    from edgepipe.device.scoring import model_outputs

    return model_outputs(infer_all(runner, inputs, batch_size))
