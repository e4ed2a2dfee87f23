"""PyTorch eager runner: the original model, the reference every other artifact is compared with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.onnx_export import INPUT_NAME, outputs_as_arrays
from edgepipe.run import MODEL_PT
from edgepipe.runners.base import Runner, TensorSpec


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, stage_directory: Path, filename: str = MODEL_PT, device: str = "cpu",
                 threads: int | None = None) -> None:
        super().__init__()
        self.stage_directory = Path(stage_directory)
        self.filename = filename
        self._device_name = device
        self.threads = threads
        self._threads_before: int | None = None

    def open(self) -> None:
        import torch

        from edgepipe.checkpoint import load_model

        self._torch = torch
        self._device = torch.device(self._device_name)
        model, manifest = load_model(self.stage_directory, self.filename)
        self.model = model.to(self._device).eval()
        self._inputs = [TensorSpec(INPUT_NAME, (None, *manifest.model["input_shape"]))]
        # One sample through the model names its outputs as the ONNX export does (a tensor, a tuple, a dict).
        probe = self._run(np.zeros((1, *manifest.model["input_shape"]), np.float32))
        self._outputs = [TensorSpec(name, (None, *array.shape[1:])) for name, array in probe.items()]
        if self.threads:
            # torch's intra-op pool is process-wide: put it back on close, or a bench at 1 thread would leave every
            # later training and eval in this process (a notebook, the test suite) on 1 thread, slower and with
            # other float reductions, so other weights.
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def close(self) -> None:
        if self._threads_before is not None:
            self._torch.set_num_threads(self._threads_before)
            self._threads_before = None

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @property
    def device(self) -> str:
        return str(self._device)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(feed[INPUT_NAME])

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._torch.inference_mode():
            result: Any = self.model(self._torch.from_numpy(batch).to(self._device))
        return outputs_as_arrays(result)
