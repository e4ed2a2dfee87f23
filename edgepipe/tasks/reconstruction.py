"""Reconstruction (an autoencoder): the output is the input rebuilt; PSNR on the raw [0, 1] image scale is the
budgeted metric (a drop in dB), and two models agree as closely as the PSNR between their outputs says."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepipe.tasks.base import Task

# A reconstruction no better than answering every input with the training set's mean image has learned nothing.
MIN_GAIN_OVER_MEAN_DB = 1.0


class Reconstruction(Task):
    name = "reconstruction"
    metric = "psnr_db"
    metric_label = "PSNR"
    unit = "dB"
    default_max_drop = 1.0
    agreement_label = "PSNR vs the reference's output"
    targets_are_inputs = True
    distill_kind = "outputs-mse"

    def targets(self, split) -> np.ndarray:
        if not hasattr(split, "x"):
            from edgepipe.errors import EdgepipeError

            raise EdgepipeError("reconstruction needs an in-memory dataset (digits, mnist5k): its targets are whole "
                                "images, which a streamed image folder does not hold")
        return split.x

    def loss(self, config):
        from torch import nn

        return nn.MSELoss()

    def distill_loss(self, temperature: float):
        from torch import nn

        return nn.MSELoss()  # the teacher's reconstruction, pixel by pixel: the same scale as the task's loss

    def metrics(self, outputs: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict[str, Any]:
        psnr = self.per_sample(outputs, targets)
        # PSNR = 10 log10(1 / MSE) per sample on the raw scale, so the raw MSE is read back from it
        return {"psnr_db": float(psnr.mean()), "mse": float((10.0 ** (-psnr / 10.0)).mean())}

    def degenerate(self, outputs: np.ndarray, targets: np.ndarray, labels: list[str]) -> str | None:
        if outputs.shape != targets.shape:
            return None
        mean_image = np.broadcast_to(targets.mean(0, keepdims=True), targets.shape)
        baseline, score = self.score(mean_image, targets), self.score(outputs, targets)
        if score < baseline + MIN_GAIN_OVER_MEAN_DB:
            return (f"reconstruction PSNR {score:.2f} dB is within {MIN_GAIN_OVER_MEAN_DB} dB of answering every "
                    f"input with the mean image ({baseline:.2f} dB): the autoencoder learned nothing useful")
        return None

    def report_columns(self):
        return [("MSE", lambda m: f"{m['mse']:.2e}")]

    def format_score(self, value: float | None) -> str:
        return "—" if value is None else f"{value:.2f} dB"

    def format_agreement(self, value: float | None) -> str:
        return "—" if value is None else f"{value:.1f} dB"

    def predictions(self, outputs: np.ndarray, inputs: np.ndarray, labels: list[str], top_k: int
                    ) -> list[dict[str, Any]]:
        """What `infer` says of each sample: how close its reconstruction is to it."""
        return [{"psnr_db": float(value)} for value in self.per_sample(outputs, inputs)]
