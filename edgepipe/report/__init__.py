"""Results for people (rich tables, report.md, report.png) and machines (report.json, merged across stages).

Stages return results; the CLI shows them with :mod:`.tables`; the pipeline and the commands hand them to the one
writer, :func:`.writer.write_report`, which alone writes report.json (:mod:`.store`), report.md (:mod:`.markdown`),
report.png (:mod:`.plot`) and the task's picture, report-task.png (:mod:`.task_plot`).
"""

from edgepipe.report.markdown import bench_markdown_table, write_report_markdown
from edgepipe.report.plot import write_report_plot
from edgepipe.report.store import REPORT, bench_is_stale, record_bench, update_report
from edgepipe.report.tables import bench_table, eval_table, infer_table, naive_table, prune_table, quantize_table
from edgepipe.report.task_plot import write_task_plot
from edgepipe.report.writer import read_report, write_report

__all__ = ["REPORT", "bench_is_stale", "bench_markdown_table", "bench_table", "eval_table", "infer_table",
           "naive_table", "prune_table", "quantize_table", "read_report", "record_bench", "update_report",
           "write_report", "write_report_markdown", "write_report_plot", "write_task_plot"]
