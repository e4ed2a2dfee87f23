"""What every recipe section shares: unknown keys refused, frozen values, and the bounded batch size."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from edgepipe import limits

SEED_MAX = 2**32 - 1  # numpy and torch seeds are 32-bit


def _batch_size(size: int) -> int:
    if size < 1:
        raise ValueError("batch sizes must be positive integers")
    problem = limits.batch_problem(size)  # the one bound on what a batch may allocate
    if problem:
        raise ValueError(problem)
    return size


BatchSize = Annotated[int, AfterValidator(_batch_size)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Distillation settings, the same for the pruning fine-tune and QAT (edgepipe.distillation): declared once here.
def distill_mode_field(default: str, student: str) -> Any:
    return Field(default=default, description=f"{student} learns the original's outputs too (logits, reconstructions, "
                 "head maps); auto: where it was measured to help (edgepipe.distillation)")


def distill_alpha_field(default: float) -> Any:
    return Field(default=default, gt=0, le=1, description="weight of the distillation term; the task's loss gets "
                 "1 - alpha")


def distill_temperature_field(default: float) -> Any:
    return Field(default=default, gt=0, description="softens both models' logits (classification)")
