"""Distillation from the original during a fine-tune (pruning, QAT): the student learns the task and the teacher.

The loss is ``alpha * distill + (1 - alpha) * task`` (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a
Neural Network", arXiv:1503.02531), with the teacher frozen, in eval mode, under ``torch.no_grad``, on the same
augmented batch the student sees. What is distilled is the task's business (edgepipe.tasks: ``distill_kind``,
``teacher_outputs``, ``distill_loss``): class logits, reconstructed images, or a detector's raw head maps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

DistillMode = Literal["auto", "on", "off"]

FineTune = Literal["prune", "qat"]

# What "auto" means, per fine-tune and task: on only where a measurement showed it helps. Measured with
# `benchmarks/distill_effect.py --seeds 0 1` (mnist-resnet, train 5 epochs, prune ratio 0.7 = 14.5 % of the MACs
# kept, fine-tune 3 epochs at lr 0.05, alpha 0.5, T 4; 500 val / 500 test digits, CPU, 2026-12-07):
#   seed 0: off val 97.2 test 95.8 | on val 97.0 test 96.8      seed 1: off val 97.6 test 96.6 | on val 97.2 test 95.9
#   on - off: val -0.30 +- 0.14 pts, test +0.15 +- 1.20 pts (mean +- sd over seeds)
# No gain beyond one or two samples of noise, and val (what the budget judges) was lower on both seeds: auto is off
# for classification. Reconstruction, detection and QAT were not measured: auto leaves them off (say `on`).
AUTO_DISTILL: dict[str, dict[str, bool]] = {
    "prune": {"classification": False, "reconstruction": False, "detection": False},
    "qat": {"classification": False, "reconstruction": False, "detection": False},
}


@dataclass(frozen=True)
class Teacher:
    """A frozen model to distil from, and how much its term weighs."""

    model: nn.Module
    alpha: float  # weight of the distillation term; the task's loss gets 1 - alpha
    temperature: float  # softens both sides' logits (classification only)


def distill_enabled(mode: DistillMode, fine_tune: FineTune, task_name: str) -> bool:
    """Whether ``mode`` distils in this fine-tune for this task ("auto": the measured decision above)."""
    return mode == "on" or (mode == "auto" and AUTO_DISTILL[fine_tune].get(task_name, False))


def teacher_for(model: nn.Module, fine_tune: FineTune, mode: DistillMode, alpha: float, temperature: float,
                task) -> Teacher | None:
    """A frozen copy of ``model`` (taken now, before the caller changes it) as the teacher, or None when off."""
    if not distill_enabled(mode, fine_tune, task.name):
        return None
    frozen = copy.deepcopy(model).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return Teacher(frozen, alpha, temperature)


def distill_record(teacher: Teacher | None, task) -> dict[str, Any] | str:
    """What a manifest says of a fine-tune's distillation: its alpha, temperature and kind, or "off"."""
    if teacher is None:
        return "off"
    return {"alpha": teacher.alpha, "temperature": teacher.temperature if task.distill_uses_temperature else None,
            "kind": task.distill_kind}


class DistillMix:
    """The mixed loss of one fit, and each term's running mean over an epoch (logged beside the train loss)."""

    def __init__(self, teacher: Teacher, task, device: torch.device) -> None:
        self.teacher, self.task = teacher, task
        self.model = teacher.model.to(device).eval()  # fit's train() reaches only the student
        self.loss = task.distill_loss(teacher.temperature)
        self.sums = {"task": 0.0, "distill": 0.0}
        self.seen = 0

    def __call__(self, student_outputs, inputs: torch.Tensor, task_loss: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_outputs = self.task.teacher_outputs(self.model, inputs)
        distill_loss = self.loss(student_outputs, teacher_outputs)
        self.sums["task"] += task_loss.item() * len(inputs)
        self.sums["distill"] += distill_loss.item() * len(inputs)
        self.seen += len(inputs)
        return self.teacher.alpha * distill_loss + (1 - self.teacher.alpha) * task_loss

    def epoch_losses(self) -> dict[str, float]:
        """The epoch's mean task and distillation losses; starts the next epoch's."""
        losses = {f"train_{name}_loss": total / max(self.seen, 1) for name, total in self.sums.items()}
        self.sums, self.seen = dict.fromkeys(self.sums, 0.0), 0
        return losses
