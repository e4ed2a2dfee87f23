"""Options more than one command declares, declared once (typer only: `edgepipe --help` imports no pydantic)."""

from __future__ import annotations

from typing import Annotated

import typer

# Distillation, the same for prune's fine-tune (--distill*) and QAT (--qat-distill*).
DistillMode = Annotated[str, typer.Option(help="Also learn the original model's outputs (distillation): auto (where "
                                               "it was measured to help), on or off.")]
DistillAlpha = Annotated[float, typer.Option(help="Weight of the distillation term (the task loss gets 1 - alpha).")]
DistillTemperature = Annotated[float, typer.Option(help="Softens both models' logits (classification).")]
