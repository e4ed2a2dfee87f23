"""Rich tables for the terminal: eval, bench, prune, quantize, infer. Stages return results; these show them."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from edgepipe.report.results import QuantizeResult
from edgepipe.run import MODEL_PT, ORIGINAL


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def task_of_report(report: dict[str, Any]):
    """The task a report was made for (classification when it predates the record), to format its numbers."""
    from edgepipe.tasks import task_named

    return task_named((report.get("task") or {}).get("name"))


def eval_table(report: dict[str, Any]) -> Table:
    task = task_of_report(report)
    budget, unit = report["max_drop"], task.unit
    table = Table(title=f"{report['recipe']} · {report['dataset']['name']} test split "
                        f"({report['dataset']['test_samples']} samples) · budget {budget} {unit}")
    extra = task.report_columns()
    agreement = task.agreement_column
    columns = ("artifact", "backend", "precision", task.metric_label, f"drop ({unit})", "± 95%", agreement,
               "vs parent", *(title for title, _ in extra), "size")
    for column in columns:
        table.add_column(column, justify="left" if column in ("artifact", "backend", "precision") else "right")
    for row in report["artifacts"]:
        if "skipped" in row:
            table.add_row(row["name"], row["backend"], row["precision"], "[dim]skipped[/dim]",
                          *[""] * (len(columns) - 5), human_size(row["size_bytes"]))
            continue
        drop = row["drop"]
        style = "green" if row["within_budget"] else "bold red"
        interval = row.get("drop_ci95")
        table.add_row(row["name"], row["backend"], row["precision"], task.format_score(row["score"]),
                      f"[{style}]{drop:+.2f}[/{style}]", "—" if interval is None else f"{interval:.2f}",
                      task.format_agreement(row["agreement"]), task.format_agreement(row.get("agreement_with_parent")),
                      *(cell(row["metrics"]) for _, cell in extra), human_size(row["size_bytes"]))
    if report.get("budget_resolvable") is False:
        table.caption = (f"the {budget} {unit} budget is finer than one test sample ({report['resolution']:.2f} "
                         f"{unit}): it cannot be resolved on this many samples")
    return table


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


# --- bench: the rich table, report.md and report.png -------------------------------------------------------

def _count(value: float | None) -> str:
    if value is None:
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}"


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _drop(row: dict[str, Any]) -> str:
    return "—" if row.get("drop") is None else f"{row['drop']:+.2f}"


def _speedup(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}x"


BENCH_COLUMNS = ("artifact", "backend", "prec", "batch", "p50 ms", "p90", "p99", "p50 ±", "samples/s", "speedup",
                 "e2e p50", "memory", "size", "params", "MACs", "drop")


def _bytes(size: float | None) -> str:
    """Compact sizes for wide tables: 245K, 15.1M."""
    if size is None:
        return "—"
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit in ("B", "K") else f"{size:.1f}{unit}"
        size /= 1024
    return str(size)


_SHORT_BACKENDS = {"onnxruntime": "ort", "openvino": "ov", "tensorrt": "trt"}


def _short_setting(setting: dict[str, Any]) -> str:
    from edgepipe.bench.settings import Setting

    parsed = Setting.from_json(setting)
    return parsed.short if parsed else "?"


def bench_cells(row: dict[str, Any], short: bool = False) -> list[str]:
    latency, e2e = row["latency_ms"], row.get("end_to_end")
    backend = _SHORT_BACKENDS.get(row["backend"], row["backend"]) if short else row["backend"]
    if row.get("setting_tuned"):  # a setting other than the whole thread budget won bench's probe
        backend += f" {row.get('setting_label') if not short else _short_setting(row.get('setting'))}"
    return [row["name"], backend, row["precision"], str(row["batch"]), _ms(latency["p50"]),
            _ms(latency["p90"]), _ms(latency["p99"]), f"{row['p50_spread_pct'] / 2:.1f}%",
            _count(row["throughput_per_s"]),
            _speedup(row.get("speedup_vs_original")) + ("?" if row.get("speedup_unreliable") else ""),
            _ms(e2e["latency_ms"]["p50"]) if e2e else "—", _bytes(row.get("peak_memory_bytes")),
            _bytes(row["size_bytes"]), _count(row.get("params")), _count(row.get("macs")), _drop(row)]


def _budget_caption(result: dict[str, Any]) -> str:
    """What bench's time budget cut (bench/budget.py), so a reader never takes a shortened run for the asked one."""
    budget = result.get("budget") or {}
    if not budget.get("shrunk"):
        return ""
    took = budget.get("took_s", "?")
    return f"\ntime budget {budget['budget_s']:.0f} s (took {took} s): " + "; ".join(budget["shrunk"])


def bench_table(result: dict[str, Any]) -> Table:
    from edgepipe.bench.machine import describe

    settings = result["settings"]
    timing = f"{settings['seconds']} s" if settings["seconds"] else f"{settings['iters']} iters"
    table = Table(title=f"bench · {describe(result['machine'])} · {timing} x {settings['repeats']} repeats, "
                        f"warmup {settings['warmup']}", caption=_deployable_caption(result) +
                  "\nbackend: ort = onnxruntime, ov = OpenVINO, trt = TensorRT" + (
                      "; 1t = one thread, +tp = OpenVINO throughput streams (settings that beat the full thread "
                      "budget in bench's probe)" if any(r.get("setting_tuned") for r in result["rows"]) else "")
                  + "; p50 ± = half the range of the repeats' p50s" + _budget_caption(result),
                  padding=(0, 1), pad_edge=False)
    longest = max((len(r["name"]) for r in result["rows"]), default=8)
    for column in BENCH_COLUMNS:  # the artifact name never shrinks; numbers never wrap
        table.add_column(column, justify="left" if column in ("artifact", "backend", "prec") else "right",
                         no_wrap=True, min_width=longest if column == "artifact" else None)
    for row in result["rows"]:
        cells = bench_cells(row, short=True)
        if row["name"] == ORIGINAL:
            cells[0] = f"[bold]{cells[0]}[/bold]"
        table.add_row(*cells)
    for skipped in result["skipped"]:
        table.add_row(skipped["name"], skipped["backend"], "", "", f"[dim]skipped: {skipped['reason']}[/dim]",
                      *[""] * (len(BENCH_COLUMNS) - 5))
    return table


def _deployable_caption(result: dict[str, Any]) -> str:
    lines = [f"deploy on {target}: {pick['reason']}" for target, pick in result["deployable"].items()]
    doubted = [row for row in result["rows"] if row.get("speedup_unreliable")]
    if doubted:
        lines.append(f"speedup?: unreliable for {len(doubted)} row(s), e.g. {doubted[0]['speedup_unreliable']}")
    return "\n".join(lines)


def prune_table(metrics: dict[str, Any]) -> Table:
    """What pruning changed (the prune manifest's metrics): params, MACs, file, the task's score, measured latency."""
    score, latency = metrics["score"], metrics["latency"]["batches"]
    task = task_of_report(score)
    table = Table(title=f"prune ({metrics['method']}): before → after", title_justify="left")
    for column in ("", "unpruned", "pruned", "ratio"):
        table.add_column(column, justify="left" if not column else "right")

    def count(value: int) -> str:
        return f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value / 1e3:.1f} k"

    table.add_row("params", count(metrics["params"]["before"]), count(metrics["params"]["after"]),
                  f"{metrics['params']['ratio']:.2f}x fewer")
    table.add_row("MACs / sample", count(metrics["macs"]["before"]), count(metrics["macs"]["after"]),
                  f"{metrics['macs']['ratio']:.2f}x fewer")
    if metrics.get("depth"):  # depth pruning: the residual blocks removed before the channels
        removed = metrics["depth"]["removed"]
        table.add_row("residual blocks removed", "", str(len(removed)), ", ".join(removed))
    table.add_row(MODEL_PT, f"{metrics['file_bytes']['before'] / 1024:.0f} KiB",
                  f"{metrics['file_bytes']['after'] / 1024:.0f} KiB",
                  f"{metrics['file_bytes']['before'] / max(metrics['file_bytes']['after'], 1):.2f}x smaller")
    for split in ("val", "test"):
        table.add_row(f"{split} {task.metric_label} (before fine-tune)", task.format_score(score["unpruned"][split]),
                      task.format_score(score["before_finetune"][split]), "")
        table.add_row(f"{split} {task.metric_label}", task.format_score(score["unpruned"][split]),
                      task.format_score(score["after_finetune"][split]),
                      f"{score['drop'][split]:+.2f} {task.unit} drop")
    threads = metrics["latency"]["threads"]
    for batch, per_model in latency.items():
        table.add_row(f"latency p50, batch {batch} (ORT CPU, {threads} threads)",
                      f"{per_model['unpruned']['p50_ms']:.2f} ms", f"{per_model['pruned']['p50_ms']:.2f} ms",
                      f"{metrics['speedup'][batch]:.2f}x faster")
    return table


def quantize_table(result: QuantizeResult, where: Any) -> Table:
    """Each quantized artifact against the FP32 reference: the task's test score, drop, size and speed ratios."""
    task = task_of_report({"task": result.task})
    table = Table(title=f"quantize: {where}")
    for column in ("artifact", "precision", f"{task.metric_label} (test)", f"drop ({task.unit})", "INT8 layers",
                   "INT8 MACs", "size", "size ×", "speed ×"):
        table.add_column(column, justify="left" if column in ("artifact", "precision") else "right")
    reference = result.reference_fp32
    table.add_row("fp32 (reference)", "fp32", task.format_score(reference["test"]), "", "", "",
                  f"{reference['size_bytes'] / 1024:.0f} KiB", "1.00", "1.00")
    for row in result.artifacts:
        table.add_row(row.name, row.precision, task.format_score(row.score), f"{row.drop:+.2f}",
                      *coverage_cells(row.int8), f"{row.size_bytes / 1024:.0f} KiB",
                      "-" if row.size_ratio is None else f"{row.size_ratio:.2f}",
                      "-" if row.speed_ratio is None else f"{row.speed_ratio:.2f}")
    return table


def coverage_cells(coverage: dict[str, Any] | None) -> tuple[str, str]:
    """('41/45', '97.1 %'): how much of an INT8 graph is INT8, by weight layers and by MACs ('' for a float one)."""
    if not coverage:
        return "", ""
    return f"{coverage['int8_layers']}/{coverage['layers']}", f"{100 * coverage['mac_fraction']:.1f} %"


def naive_rows(result: QuantizeResult) -> tuple[list[str], list[list[str]]]:
    """The naive-vs-aware comparison as (header, rows): each graph's every single-number metric on test, its drop
    against the FP32 reference and how much of it is INT8 (shared by the terminal table and report.md)."""
    naive = result.naive or {}
    task = task_of_report({"task": result.task})
    keys = [key for key in naive["rows"][0]["metrics"] if key != "detections_per_image"]
    header = ["graph", *keys, f"drop ({task.unit})", "INT8 layers", "INT8 MACs"]
    rows = [[row["name"], *(task.format_score(row["metrics"][key]) for key in keys), f"{row['drop']:+.2f}",
             *coverage_cells(row["int8"] if row["name"] != "fp32" else None)] for row in naive["rows"]]
    return header, rows


def naive_table(result: QuantizeResult) -> Table:
    header, rows = naive_rows(result)
    naive = result.naive or {}
    table = Table(title=f"naive vs accuracy-aware INT8 · test split ({naive.get('samples')} samples)",
                  caption=naive.get("what"))
    for column in header:
        table.add_column(column, justify="left" if column == "graph" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def infer_table(result: dict[str, Any], top_k: int) -> Table:
    """`infer`'s predictions: one row per image, best label first (an autoencoder's: its reconstruction PSNR)."""
    table = Table(title=f"{result['path']} · {result['backend']} ({result['device']})")
    if (result.get("task") or {}).get("name") == "reconstruction":
        for column in ("image", "reconstruction PSNR"):
            table.add_column(column, justify="right" if column != "image" else "left")
        for row in result["predictions"]:
            table.add_row(row["file"], f"{row['psnr_db']:.2f} dB")
        return table
    if (result.get("task") or {}).get("name") == "detection":
        for column in ("image", "objects", "detections (label score, box x1 y1 x2 y2 in the image's pixels)"):
            table.add_column(column, justify="right" if column == "objects" else "left")
        for row in result["predictions"]:
            found = row["detections"]
            shown = "; ".join(f"{d['label']} {d['score']:.2f} [{' '.join(f'{v:.0f}' for v in d['box'])}]"
                              for d in found[:8]) + (f"; … {len(found) - 8} more" if len(found) > 8 else "")
            table.add_row(row["file"], str(len(found)), shown or "—")
        return table
    for column in ("image", "prediction", "probability", f"top {top_k}"):
        table.add_column(column, justify="right" if column == "probability" else "left")
    for row in result["predictions"]:
        best = row["top"][0]
        others = ", ".join(f"{t['label']} {t['probability']:.1%}" for t in row["top"])
        table.add_row(row["file"], best["label"], f"{best['probability']:.2%}", others)
    return table
