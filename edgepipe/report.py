"""Results for people (rich tables, markdown) and machines (report.json, merged across stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from edgepipe.artifacts import read_json, write_json_atomic

REPORT = "report.json"


def update_report(run_dir: Path, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into run_dir/report.json (eval, bench and pipeline each add their part)."""
    path = Path(run_dir) / REPORT
    report = read_json(path, "report") if path.is_file() else {}
    report.update(patch)
    write_json_atomic(path, report)
    return report


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def eval_table(report: dict[str, Any]) -> Table:
    budget = report["max_accuracy_drop"]
    table = Table(title=f"{report['recipe']} · {report['dataset']['name']} test split "
                        f"({report['dataset']['test_samples']} samples) · budget {budget} pt")
    for column in ("artifact", "backend", "precision", "accuracy", "drop (pt)", "agreement", "AUC", "size"):
        table.add_column(column, justify="left" if column in ("artifact", "backend", "precision") else "right")
    for row in report["artifacts"]:
        if "skipped" in row:
            table.add_row(row["name"], row["backend"], row["precision"], "[dim]skipped[/dim]", "", "", "",
                          _size(row["size_bytes"]))
            continue
        drop = row["accuracy_drop_pts"]
        style = "green" if row["within_budget"] else "bold red"
        table.add_row(row["name"], row["backend"], row["precision"], _pct(row["accuracy"]),
                      f"[{style}]{drop:+.2f}[/{style}]", _pct(row["agreement"]),
                      "—" if row["auc"] is None else f"{row['auc']:.4f}", _size(row["size_bytes"]))
    return table


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
