from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory for every stage's artifacts.")
    ] = Path("runs/latest"),
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json instead of tables.")] = False,
) -> None:
    """Run every stage the recipe asks for (train, prune, export, quantize, build, eval, bench, bundle)."""
    from edgepipe.cli.output import show_eval_report
    from edgepipe.stages.pipeline import run_pipeline

    report = run_pipeline(recipe, out)
    show_eval_report(report, as_json)
