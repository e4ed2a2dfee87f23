from __future__ import annotations

import json
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
    from edgepipe.progress import console
    from edgepipe.report import eval_table
    from edgepipe.stages.pipeline import run_pipeline

    report = run_pipeline(recipe, out)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console.print(eval_table(report))
    if not report["passed"]:
        typer.echo(f"over the {report['max_accuracy_drop']} pt budget: {', '.join(report['failed'])}", err=True)
        raise typer.Exit(1)
