"""RUN/report.md: what a person reads after a run (the deployable pick, machine, tables, plot, recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepipe.artifacts import MANIFEST, read_json, write_bytes_atomic
from edgepipe.report.tables import BENCH_COLUMNS, bench_cells, human_size, task_of_report
from edgepipe.run import RECIPE_COPY, REPORT_MD, REPORT_PNG, TASK_PNG, RunLayout


def _markdown_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def bench_markdown_table(result: dict[str, Any]) -> str:
    """The bench rows as a markdown table (also what benchmarks/cpu_table.py prints for the README)."""
    return _markdown_table(BENCH_COLUMNS, [bench_cells(row) for row in result["rows"]])


def _naive_section(run_dir: Path) -> list[str]:
    """Naive whole-graph INT8 beside the INT8 quantize shipped (quantize's typed result), when it was measured."""
    from edgepipe.artifacts import MANIFEST, read_manifest
    from edgepipe.report.results import QuantizeResult
    from edgepipe.report.tables import naive_rows

    quantize = RunLayout(run_dir).quantize
    if not (quantize / MANIFEST).is_file():
        return []
    metrics = read_manifest(quantize).metrics
    if not metrics.get("naive"):  # not measured (a classifier by default), or a quantize made before it was
        return []
    result = QuantizeResult.model_validate(metrics)
    header, rows = naive_rows(result)
    return ["## Naive vs accuracy-aware INT8", "", f"On the test split ({result.naive['samples']} samples), the same "
            f"calibration ranges. {result.naive['what']}.", "", _markdown_table(header, rows), ""]


def _recipe_text(run_dir: Path) -> str | None:
    import yaml

    if (run_dir / RECIPE_COPY).is_file():
        return (run_dir / RECIPE_COPY).read_text().strip()
    manifest = RunLayout(run_dir).origin / MANIFEST
    if manifest.is_file():
        recipe = read_json(manifest, "manifest").get("recipe")
        return yaml.safe_dump(recipe, sort_keys=False).strip() if recipe else None
    return None


def write_report_markdown(run_dir: Path, report: dict[str, Any]) -> Path:
    """RUN/report.md: deployable pick, machine, bench table, the task's score table, plot, recipe."""
    from edgepipe.bench.machine import describe

    run_dir = Path(run_dir)
    bench = report.get("bench")
    dataset = report.get("dataset", {})
    lines = [f"# {report.get('recipe', run_dir.name)}: edgepipe run report", ""]
    task = task_of_report(report)
    budget = report.get("max_drop")
    target = bench.get("target") if bench else None
    lines += [f"Dataset {dataset.get('name', '?')} test split ({dataset.get('test_samples', '?')} samples) · "
              f"{task.name} · budget {budget} {task.unit} of {task.metric_label} vs the original · target "
              f"{target or '—'}", ""]
    if bench:
        settings, machine = bench["settings"], bench["machine"]
        lines += ["", "## Deployable artifact", ""]
        lines += [f"- **{name}**: {pick['reason']}" for name, pick in bench["deployable"].items()]
        lines += ["", "## Machine", "", f"{describe(machine)}. {machine['int8_note']}. onnxruntime "
                  f"{machine['onnxruntime']}, OpenVINO {machine.get('openvino') or 'absent'}, "
                  f"torch {machine.get('torch') or '—'}, TensorRT "
                  f"{machine.get('tensorrt') or 'absent'}; {machine['os']}.", ""]
        timing = f"{settings['seconds']} s" if settings["seconds"] else f"{settings['iters']} timed iterations"
        lines += ["## Performance", "",
                  f"Each artifact x batch: {timing} after {settings['warmup']} warmup, x {settings['repeats']} "
                  f"repeats interleaved across artifacts; {settings['threads']} threads; latency per batch. "
                  f"Speedup = original p50 / artifact p50, same run. p50 spread = ±half the range of the "
                  f"repeats' p50s (largest: {bench['p50_spread_pct_max']:.1f}% range).", "",
                  bench_markdown_table(bench), ""]
        lines += [f"- {note}" for note in bench["notes"]]
        lines += [f"- skipped {s['name']} ({s['backend']}): {s['reason']}" for s in bench["skipped"]]
        lines.append("")
    rows = [r for r in report.get("artifacts", []) if "score" in r]
    if rows:
        lines += [f"## {task.metric_label}", "", _markdown_table(
            ("artifact", "backend", "precision", task.metric_label, f"drop ({task.unit})", "± 95%",
             task.agreement_label, "size"),
            [[r["name"], r.get("backend", ""), r["precision"], task.format_score(r["score"]), f"{r['drop']:+.2f}",
              "—" if r.get("drop_ci95") is None else f"{r['drop_ci95']:.2f}", task.format_agreement(r.get("agreement")),
              human_size(r["size_bytes"])] for r in rows]), ""]
    lines += _naive_section(run_dir)
    if (run_dir / TASK_PNG).is_file():
        title = ("Precision-recall and AP per class" if task.name == "detection" else "Confusion matrix and ROC")
        lines += [f"## {title}", "", f"![{title.lower()}]({TASK_PNG})", ""]
    if (run_dir / REPORT_PNG).is_file() or bench:
        lines += [f"## {task.metric_label} vs latency", "", f"![{task.metric_label} vs latency]({REPORT_PNG})", ""]
    recipe = _recipe_text(run_dir)
    if recipe:
        lines += ["## Recipe", "", "```yaml", recipe, "```", ""]
    path = run_dir / REPORT_MD
    write_bytes_atomic(path, "\n".join(lines).encode())
    return path
