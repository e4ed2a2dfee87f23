"""Printing results shared by several commands."""

from __future__ import annotations

from typing import Any

import typer


def show_eval_report(report: dict[str, Any], as_json: bool) -> None:
    """Print an eval report (table or JSON); exit 1 when an artifact is over the budget."""
    import json

    from edgepipe.progress import console
    from edgepipe.report import eval_table

    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console.print(eval_table(report))
    if not report["passed"]:
        unit = (report.get("task") or {}).get("unit", "pts")
        typer.echo(f"over the {report['max_drop']} {unit} budget: {', '.join(report['failed'])}", err=True)
        raise typer.Exit(1)
