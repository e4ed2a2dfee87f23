"""What a model is for, and how its artifacts are judged: one owner per task of its metrics and their units,
the drop between two artifacts and its budget, agreement between two models' outputs, the training loss, and
how `infer` presents a result.

Eval, training, prune, quantize (budget and fallback), QAT, bench's pick and the bundle ask the task; none of
them knows what a logit is. The per-sample scores are the device runtime's (edgepipe.device.runtime), so a
bundle evaluated on a Jetson and `edgepipe eval` on the workstation agree by construction.
"""

from __future__ import annotations

from typing import Any

from edgepipe.errors import EdgepipeError
from edgepipe.tasks.base import Task
from edgepipe.tasks.budget import Budget, decide_budget
from edgepipe.tasks.classification import Classification
from edgepipe.tasks.detection import Detection
from edgepipe.tasks.reconstruction import Reconstruction

TASKS: dict[str, type[Task]] = {"classification": Classification, "reconstruction": Reconstruction,
                                "detection": Detection}
DEFAULT_TASK = "classification"  # what runs and bundles made before the task seam were


def task_named(name: str | None, preprocessing: dict[str, Any] | None = None) -> Task:
    """The task called ``name`` (default classification), for data preprocessed as recorded."""
    name = name or DEFAULT_TASK
    if name not in TASKS:
        raise EdgepipeError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name](preprocessing or {})


def task_of(manifest) -> Task:
    """The task of a stage's model (its model spec records it; manifests before the task seam: classification)."""
    spec = manifest.model or {}
    preprocessing = manifest.dataset.preprocessing if manifest.dataset is not None else None
    return task_named(spec.get("task"), preprocessing)


__all__ = ["TASKS", "DEFAULT_TASK", "Budget", "Task", "decide_budget", "task_named", "task_of"]
