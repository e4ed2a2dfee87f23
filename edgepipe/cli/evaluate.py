from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    run: Annotated[Path, typer.Argument(help="Run directory (made by `edgepipe pipeline` or the stage commands).")],
    max_drop: Annotated[
        float | None, typer.Option(min=0, help="Budget in the task's unit: top-1 points, PSNR dB (default: the "
                                                 "recipe's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
) -> None:
    """The task's score (top-1, PSNR) of every artifact of a run on the test split vs the original model; exit 1 when
    one is over budget."""
    from edgepipe.cli.options import stage_config
    from edgepipe.cli.output import show_eval_report
    from edgepipe.recipe import EvalConfig
    from edgepipe.report import write_report
    from edgepipe.stages.evaluate import evaluate

    config = None if max_drop is None else stage_config(EvalConfig, {"max_drop": max_drop},
                                                         flags={"max_drop": "--max-drop"})
    report = write_report(run, evaluation=evaluate(run, config), summary=False)
    show_eval_report(report, as_json)
