"""PyTorch eager runner: the original model, the reference every other artifact is compared with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.runners.base import Runner, TensorSpec


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, stage_directory: Path, filename: str = "model.pt", device: str = "cpu",
                 threads: int | None = None) -> None:
        super().__init__()
        self.stage_directory = Path(stage_directory)
        self.filename = filename
        self._device_name = device
        self.threads = threads

    def open(self) -> None:
        import torch

        from edgepipe.checkpoint import load_model

        if self.threads:
            torch.set_num_threads(self.threads)
        self._torch = torch
        self._device = torch.device(self._device_name)
        model, manifest = load_model(self.stage_directory, self.filename)
        self.model = model.to(self._device).eval()
        self._spec = TensorSpec("input", (None, *manifest["model"]["input_shape"]))

    @property
    def input_spec(self) -> TensorSpec:
        return self._spec

    @property
    def device(self) -> str:
        return str(self._device)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            inputs = self._torch.from_numpy(batch).to(self._device)
            return self.model(inputs).float().cpu().numpy()
