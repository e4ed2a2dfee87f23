"""The contract every task keeps. Scores are means of per-sample scores, so every drop comes with a paired
confidence interval over the same evaluation samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np


def constant_outputs(outputs: np.ndarray) -> str | None:
    """Why a model whose outputs are the same for every sample (a dead network: all zeros, say) is degenerate, or
    None. Export, prune and eval all ask: such a model scores a trivial guess and agrees perfectly with itself."""
    outputs = np.asarray(outputs)
    if len(outputs) < 2 or float(np.abs(outputs - outputs[:1]).max()) != 0.0:
        return None
    return (f"the model's outputs are the same for all {len(outputs)} test samples (every value "
            f"{float(outputs.ravel()[0]):.3g}): it does not depend on its input, so training failed (dead "
            "activations, a diverged learning rate)")


class Task:
    name: ClassVar[str]
    metric: ClassVar[str]  # the primary metric's key in reports ("accuracy", "psnr_db")
    metric_label: ClassVar[str]  # how a table heads it ("top-1", "PSNR")
    unit: ClassVar[str]  # what drops and budgets are in ("pts", "dB")
    default_max_drop: ClassVar[float]  # the budget when a recipe gives none
    agreement_label: ClassVar[str]  # what agreement between two models' outputs measures
    targets_are_inputs: ClassVar[bool] = False  # an autoencoder: a training batch's targets are its inputs
    moves_with_inputs: ClassVar[bool] = False  # targets tied to pixel positions (boxes): no geometric augmentation
    agreement_column: ClassVar[str] = "vs original"  # the eval table's heading for agreement with the original
    distill_kind: ClassVar[str]  # what a student learns from its teacher (edgepipe.distillation), as manifests say
    distill_uses_temperature: ClassVar[bool] = False  # softened logits: the temperature means something

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        from edgepipe.device.scoring import TASK_SCORES

        self.preprocessing = preprocessing
        self.scores = TASK_SCORES[self.name](preprocessing.get("std"))

    # ---- data and training -------------------------------------------------------------------------------
    def targets(self, split) -> np.ndarray:
        """What the model's output is scored against, for a data split (x, y)."""
        raise NotImplementedError

    def loss(self, config):
        """The training loss, a torch callable (outputs, targets) -> scalar."""
        raise NotImplementedError

    def teacher_outputs(self, teacher, inputs):
        """What the frozen teacher (in eval mode) gives for ``inputs``, in the form the student's training outputs
        take (fit calls it under torch.no_grad)."""
        return teacher(inputs)

    def distill_loss(self, temperature: float):
        """The distillation term, a torch callable (student's training outputs, teacher outputs) -> scalar."""
        raise NotImplementedError

    # ---- judging -----------------------------------------------------------------------------------------
    def per_sample(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return self.scores.per_sample(outputs, targets)

    def score(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """The primary metric (higher is better): the mean of the per-sample scores."""
        return self.scores.score(outputs, targets)

    def drop(self, reference: float, value: float) -> float:
        """How much worse ``value`` is than ``reference``, in the budget's unit."""
        return float(self.scores.drop(reference, value))

    def drop_interval(self, reference_outputs: np.ndarray, outputs: np.ndarray, targets: np.ndarray) -> float:
        """Half-width of the drop's 95 % confidence interval, in the budget's unit: a paired difference on the same
        samples (two models are right and wrong on mostly the same ones), normal approximation."""
        difference = self.per_sample(reference_outputs, targets) - self.per_sample(outputs, targets)
        if len(difference) < 2:
            return float("inf")
        return float(1.96 * difference.std(ddof=1) / np.sqrt(len(difference)) * self.scores.per_unit)

    def resolution(self, samples: int) -> float:
        """The smallest drop the evaluation set can show, in the budget's unit (one sample's worth)."""
        return 0.0

    def agreement(self, reference_outputs: np.ndarray, outputs: np.ndarray) -> float:
        return self.scores.agreement(outputs, reference_outputs)

    def parity_pair(self, reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two outputs as an export's tolerance compares them, element by element (as they are, unless their
        order is arbitrary)."""
        return reference, candidate

    def export_agreement_floor(self, config) -> float | None:
        """The agreement an ONNX export must keep with PyTorch (None: the output tolerance alone decides)."""
        return None

    def metrics(self, outputs: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict[str, Any]:
        """Every metric of the task for one model's outputs (the primary one under ``metric``)."""
        return {self.metric: self.score(outputs, targets)}

    def degenerate(self, outputs: np.ndarray, targets: np.ndarray, labels: list[str]) -> str | None:
        """A warning when the model scores no better than a trivial guess (None when it does)."""
        return None

    # ---- presentation ------------------------------------------------------------------------------------
    def report_columns(self) -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
        """The eval table's columns beyond the primary metric: (heading, cell of a row's metrics)."""
        return []

    def format_score(self, value: float | None) -> str:
        raise NotImplementedError

    def format_agreement(self, value: float | None) -> str:
        raise NotImplementedError

    def predictions(self, outputs: np.ndarray, inputs: np.ndarray, labels: list[str], top_k: int
                    ) -> list[dict[str, Any]]:
        """What `infer` says of each sample (a classifier's top-k classes, an autoencoder's PSNR)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The task record a report, a manifest and a bundle carry."""
        return {"name": self.name, "metric": self.metric, "unit": self.unit}
