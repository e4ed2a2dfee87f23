"""The one writer of a run's report: report.json (eval and bench results merged, never stale), report.md,
report.png and the task's picture (report-task.png).

Stages return results and write no report; the pipeline and the commands hand the results here. Bench reads the
eval rows of report.json but never writes the report it read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepipe.report.markdown import write_report_markdown
from edgepipe.report.plot import write_report_plot
from edgepipe.report.store import read_stored, record_bench, update_report
from edgepipe.report.task_plot import write_task_plot


def read_report(run_dir: Path) -> dict[str, Any]:
    """report.json of ``run_dir`` ({} when there is none yet), older reports' keys read as today's."""
    return read_stored(run_dir)


def write_report(run_dir: Path, *, evaluation: dict[str, Any] | None = None, bench: dict[str, Any] | None = None,
                 summary: bool = True) -> dict[str, Any]:
    """Merge an eval report and/or a bench result into report.json (an eval report also draws the task's picture);
    with ``summary``, write report.md and report.png (accuracy vs latency, once there are bench rows) from the
    merged whole. Returns the merged report."""
    run_dir = Path(run_dir)
    report = None
    if evaluation is not None:
        report = update_report(run_dir, evaluation)
        write_task_plot(run_dir, report)
    if bench is not None:
        report = record_bench(run_dir, bench)
    if report is None:
        report = read_report(run_dir)
    if summary:
        write_report_markdown(run_dir, report)
        write_report_plot(run_dir, report)
    return report
