"""What every recipe section shares: unknown keys refused, frozen values, and the bounded batch size."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

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
