"""The runner contract every backend implements (PyTorch, onnxruntime, TensorRT).

Evaluation, comparison, benchmarking and ``infer`` are written once against it, so any two
backends can be compared on the same inputs (the Polygraphy idea, without its scaffolding).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from edgepipe.errors import EdgepipeError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # None marks a dynamic axis (the batch axis)
    dtype: str = "float32"


class Runner(ABC):
    """One loaded model on one backend. Use as a context manager; ``infer`` takes a float32 batch."""

    backend: str = "abstract"

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
    def input_spec(self) -> TensorSpec: ...

    @property
    def device(self) -> str:
        """Where it runs, for reports ("cpu", "cuda:0 (NVIDIA H100)", ...)."""
        return "cpu"

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; returns the model's first output (logits) as a numpy array."""
        if not self._opened:
            raise RuntimeError(f"{type(self).__name__} used outside its context manager")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.check_shape(batch.shape)
        return self._infer(batch)

    def check_shape(self, shape: tuple[int, ...]) -> None:
        expected = self.input_spec.shape
        ok = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape, strict=False))
        if not ok:
            shown = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
            raise EdgepipeError(
                f"input shape {tuple(shape)} does not match the model's input '{self.input_spec.name}' {shown}"
            )


def infer_in_batches(runner: Runner, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run ``inputs`` through ``runner`` in chunks and concatenate the outputs."""
    fixed_batch = runner.input_spec.shape[0]
    if fixed_batch is not None:
        batch_size = fixed_batch
    outputs = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        if fixed_batch is not None and len(chunk) < fixed_batch:  # pad the tail for static-batch models
            pad = np.zeros((fixed_batch - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
            outputs.append(runner.infer(np.concatenate([chunk, pad]))[: len(chunk)])
        else:
            outputs.append(runner.infer(chunk))
    return np.concatenate(outputs)
