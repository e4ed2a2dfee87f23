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
        dead = [row["name"] for row in report.get("artifacts", []) if row.get("degenerate")]
        over = [name for name in report["failed"] if name not in dead or any(
            row["name"] == name and row.get("within_budget") is False for row in report.get("artifacts", []))]
        if over:
            typer.echo(f"over the {report['max_drop']} {unit} budget: {', '.join(over)}", err=True)
        if dead:
            typer.echo(f"degenerate (outputs independent of the input): {', '.join(dead)}", err=True)
        raise typer.Exit(1)
