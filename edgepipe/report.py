"""Results for people (rich tables, markdown) and machines (report.json, merged across stages)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.table import Table

from edgepipe.artifacts import read_json, sha256_file, write_bytes_atomic, write_json_atomic
from edgepipe.rundir import run_lock

REPORT = "report.json"


def update_report(run_dir: Path, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into run_dir/report.json (eval, bench and pipeline each add their part).

    Under the run's lock: two processes merging at once would lose one's part.
    """
    with run_lock(run_dir):
        return _merge_report(Path(run_dir), patch)


def _merge_report(run_dir: Path, patch: dict[str, Any]) -> dict[str, Any]:
    path = Path(run_dir) / REPORT
    report = read_json(path, "report") if path.is_file() else {}
    if not isinstance(report, dict):
        report = {}  # not ours to keep: the parts are made again from the artifacts
    report.update(patch)
    if "bench" not in patch and report.get("bench") and bench_is_stale(report["bench"], Path(run_dir)):
        del report["bench"]  # timings of files that have since been rebuilt must not be reported as current
    write_json_atomic(path, report)
    return report


def bench_is_stale(bench: dict[str, Any], run_dir: Path) -> bool:
    """True when a benchmarked file is gone or differs from the one timed (its sha256 is in every row).

    Only files inside ``run_dir`` are hashed: a report.json naming a file elsewhere is stale, not followed.
    """
    current: dict[str, str | None] = {}
    root = Path(run_dir).resolve()
    for row in bench.get("rows", []) if isinstance(bench, dict) else [None]:
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            return True
        path = Path(row["path"])
        if root not in path.resolve().parents:
            return True
        if row["path"] not in current:
            current[row["path"]] = sha256_file(path) if path.is_file() else None
        if row.get("sha256") is None or current[row["path"]] != row["sha256"]:
            return True
    return False


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
    return "—" if row.get("accuracy_drop_pts") is None else f"{row['accuracy_drop_pts']:+.2f}"


def _speedup(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}x"


BENCH_COLUMNS = ("artifact", "backend", "prec", "batch", "p50 ms", "p90", "p99", "p50 ±", "samples/s", "speedup",
                 "e2e p50", "memory", "size", "params", "MACs", "drop pt")


def _bytes(size: float | None) -> str:
    """Compact sizes for wide tables: 245K, 15.1M."""
    if size is None:
        return "—"
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit in ("B", "K") else f"{size:.1f}{unit}"
        size /= 1024
    return str(size)


_SHORT_BACKENDS = {"onnxruntime": "ort", "tensorrt": "trt"}


def bench_cells(row: dict[str, Any], short: bool = False) -> list[str]:
    latency, e2e = row["latency_ms"], row.get("end_to_end")
    backend = _SHORT_BACKENDS.get(row["backend"], row["backend"]) if short else row["backend"]
    return [row["artifact"], backend, row["precision"], str(row["batch"]), _ms(latency["p50"]),
            _ms(latency["p90"]), _ms(latency["p99"]), f"{row['p50_spread_pct'] / 2:.1f}%",
            _count(row["throughput_per_s"]), _speedup(row.get("speedup_vs_original")),
            _ms(e2e["latency_ms"]["p50"]) if e2e else "—", _bytes(row.get("peak_memory_bytes")),
            _bytes(row["size_bytes"]), _count(row.get("params")), _count(row.get("macs")), _drop(row)]


def bench_table(result: dict[str, Any]) -> Table:
    from edgepipe.bench.machine import describe

    settings = result["settings"]
    timing = f"{settings['seconds']} s" if settings["seconds"] else f"{settings['iters']} iters"
    table = Table(title=f"bench · {describe(result['machine'])} · {timing} x {settings['repeats']} repeats, "
                        f"warmup {settings['warmup']}", caption=_deployable_caption(result) +
                  "\nbackend: ort = onnxruntime, trt = TensorRT; p50 ± = half the range of the repeats' p50s",
                  padding=(0, 1), pad_edge=False)
    longest = max((len(r["artifact"]) for r in result["rows"]), default=8)
    for column in BENCH_COLUMNS:  # the artifact name never shrinks; numbers never wrap
        table.add_column(column, justify="left" if column in ("artifact", "backend", "prec") else "right",
                         no_wrap=True, min_width=longest if column == "artifact" else None)
    for row in result["rows"]:
        cells = bench_cells(row, short=True)
        if row["artifact"] == "original":
            cells[0] = f"[bold]{cells[0]}[/bold]"
        table.add_row(*cells)
    for skipped in result["skipped"]:
        table.add_row(skipped["artifact"], skipped["backend"], "", "", f"[dim]skipped: {skipped['reason']}[/dim]",
                      *[""] * (len(BENCH_COLUMNS) - 5))
    return table


def _deployable_caption(result: dict[str, Any]) -> str:
    return "\n".join(f"deploy on {target}: {pick['reason']}" for target, pick in result["deployable"].items())


def _markdown_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def bench_markdown_table(result: dict[str, Any]) -> str:
    """The bench rows as a markdown table (also what benchmarks/cpu_table.py prints for the README)."""
    return _markdown_table(BENCH_COLUMNS, [bench_cells(row) for row in result["rows"]])


def _recipe_text(run_dir: Path) -> str | None:
    import yaml

    if (run_dir / "recipe.yaml").is_file():
        return (run_dir / "recipe.yaml").read_text().strip()
    manifest = run_dir / "train" / "manifest.json"
    if manifest.is_file():
        recipe = read_json(manifest, "manifest").get("recipe")
        return yaml.safe_dump(recipe, sort_keys=False).strip() if recipe else None
    return None


def write_report_markdown(run_dir: Path, report: dict[str, Any]) -> Path:
    """RUN/report.md: deployable pick, machine, bench table, accuracy table, plot, recipe."""
    from edgepipe.bench.machine import describe

    run_dir = Path(run_dir)
    bench = report.get("bench")
    dataset = report.get("dataset", {})
    lines = [f"# {report.get('recipe', run_dir.name)}: edgepipe run report", ""]
    budget = report.get("max_accuracy_drop")
    target = bench.get("target") if bench else None
    lines.append(f"Dataset {dataset.get('name', '?')} test split ({dataset.get('test_samples', '?')} samples) · "
                 f"accuracy budget {budget} pt vs the original · target {target or '—'}")
    if bench:
        settings, machine = bench["settings"], bench["machine"]
        lines += ["", "## Deployable artifact", ""]
        lines += [f"- **{name}**: {pick['reason']}" for name, pick in bench["deployable"].items()]
        lines += ["", "## Machine", "", f"{describe(machine)}. {machine['int8_note']}. onnxruntime "
                  f"{machine['onnxruntime']}, torch {machine.get('torch') or '—'}, TensorRT "
                  f"{machine.get('tensorrt') or 'absent'}; {machine['os']}.", ""]
        timing = f"{settings['seconds']} s" if settings["seconds"] else f"{settings['iters']} timed iterations"
        lines += ["## Performance", "",
                  f"Each artifact x batch: {timing} after {settings['warmup']} warmup, x {settings['repeats']} "
                  f"repeats interleaved across artifacts; {settings['threads']} threads; latency per batch. "
                  f"Speedup = original p50 / artifact p50, same run. p50 spread = ±half the range of the "
                  f"repeats' p50s (largest: {bench['p50_spread_pct_max']:.1f}% range).", "",
                  bench_markdown_table(bench), ""]
        lines += [f"- {note}" for note in bench["notes"]]
        lines += [f"- skipped {s['artifact']} ({s['backend']}): {s['reason']}" for s in bench["skipped"]]
        lines.append("")
    rows = [r for r in report.get("artifacts", []) if "accuracy" in r]
    if rows:
        lines += ["## Accuracy", "", _markdown_table(
            ("artifact", "backend", "precision", "accuracy", "drop (pt)", "agreement", "size"),
            [[r["name"], r.get("backend", ""), r["precision"], _pct(r["accuracy"]), f"{r['accuracy_drop_pts']:+.2f}",
              _pct(r.get("agreement")), _size(r["size_bytes"])] for r in rows]), ""]
    if (run_dir / "report.png").is_file() or bench:
        lines += ["## Accuracy vs latency", "", "![accuracy vs latency](report.png)", ""]
    recipe = _recipe_text(run_dir)
    if recipe:
        lines += ["## Recipe", "", "```yaml", recipe, "```", ""]
    path = run_dir / "report.md"
    write_bytes_atomic(path, "\n".join(lines).encode())
    return path


_BACKEND_COLORS = {"torch": "#d62728", "onnxruntime": "#1f77b4", "tensorrt": "#2ca02c"}
_PRECISION_MARKERS = {"fp32": "o", "fp16": "^", "int8": "s"}


def _marker_area(size_bytes: float, largest: float) -> float:
    return 60.0 + 900.0 * (size_bytes / largest) if largest else 60.0


# label offsets (points) tried in order: right, then left, then further up/down, until a label overlaps nothing
_LABEL_OFFSETS = [(14, 8), (14, -16), (-14, 8), (-14, -16), (16, -4), (-16, -4), (14, 24), (14, -32),
                  (-14, 24), (-14, -32), (0, 40), (0, -48), (40, 16), (40, -24), (-40, 16), (-40, -24)]
_Box = tuple[float, float, float, float]


def _overlaps(box: _Box, others: list[_Box]) -> bool:
    return any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in others)


def _place_labels(figure: Any, axis: Any, points: list[tuple[float, float, float, str, bool, bool]]) -> None:
    """Greedy label placement: each label takes the first offset whose box overlaps no marker and no earlier
    label and stays inside the axes (matplotlib has no built-in; adjustText would be one more dependency)."""
    renderer = figure.canvas.get_renderer()
    pixels_per_point = figure.dpi / 72.0
    frame = axis.get_window_extent(renderer)
    markers: list[_Box] = []
    for x, y, area, *_ in points:
        cx, cy = axis.transData.transform((x, y))
        radius = (area ** 0.5) / 2 * pixels_per_point
        markers.append((cx - radius, cy - radius, cx + radius, cy + radius))
    placed: list[_Box] = []
    for index, (x, y, _, label, is_original, is_pick) in enumerate(points):
        obstacles = placed + markers[:index] + markers[index + 1:]
        best: tuple[int, int, _Box] | None = None
        for number, (dx, dy) in enumerate(_LABEL_OFFSETS):
            box = _label_box(figure, axis, renderer, (x, y), label, (dx, dy))
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
            score = (0 if inside else 100) + sum(_overlaps(box, [o]) for o in obstacles)
            if best is None or score < best[0]:
                best = (score, number, box)
            if score == 0:
                break
        score, number, box = best
        dx, dy = _LABEL_OFFSETS[number]
        axis.annotate(label, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=9,
                      ha="left" if dx > 0 else "right" if dx < 0 else "center",
                      va="bottom" if dy > 0 else "top" if dy < -6 else "center",
                      fontweight="bold" if is_original or is_pick else "normal", zorder=5,
                      color="#1a7f1a" if is_pick else "black",
                      bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
                      arrowprops={"arrowstyle": "-", "color": "0.45", "lw": 0.7, "shrinkA": 0, "shrinkB": 4})
        placed.append(box)


def _label_box(figure: Any, axis: Any, renderer: Any, xy: tuple[float, float], label: str,
               offset: tuple[int, int]) -> _Box:
    """Where a label at ``offset`` (points) from ``xy`` would be drawn, in display pixels (drawn, measured, removed)."""
    dx, dy = offset
    text = axis.annotate(label, xy, textcoords="offset points", xytext=(dx, dy), fontsize=9, fontweight="bold",
                         ha="left" if dx > 0 else "right" if dx < 0 else "center",
                         va="bottom" if dy > 0 else "top" if dy < -6 else "center",
                         bbox={"boxstyle": "round,pad=0.2"})
    extent = text.get_window_extent(renderer)
    text.remove()
    return (extent.x0, extent.y0, extent.x1, extent.y1)


def write_report_plot(run_dir: Path, report: dict[str, Any]) -> Path | None:
    """RUN/report.png: accuracy vs p50 latency (log x), one panel per batch size, marker area by file size,
    the original highlighted, the accuracy budget drawn. None when there is nothing with accuracy to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator

    bench = report.get("bench") or {}
    rows = [r for r in bench.get("rows", []) if r.get("accuracy") is not None]
    original = report.get("original", {}).get("accuracy")
    if not rows or original is None:
        return None
    sizes = sorted({r["batch"] for r in rows})[:3]
    budget = float(report.get("max_accuracy_drop", bench.get("max_accuracy_drop", 0.5)))
    largest = max(r["size_bytes"] for r in rows)
    accuracies = [r["accuracy"] * 100 for r in rows]
    low, high = min(min(accuracies), original * 100 - budget), max(max(accuracies), original * 100)
    pad = 0.3 * budget + 0.15 * (high - low)  # room for labels above the top and below the bottom points
    low, high = low - pad, high + pad
    pick = (bench.get("deployable") or {}).get("cpu") or {}
    figure, axes = plt.subplots(1, len(sizes), figsize=(6.4 * len(sizes), 5.4), sharey=True, squeeze=False)
    labels = []
    for axis, size in zip(axes[0], sizes, strict=True):
        at_size = sorted((r for r in rows if r["batch"] == size), key=lambda r: r["latency_ms"]["p50"])
        axis.axhspan(original * 100 - budget, high, color="#2ca02c", alpha=0.07, zorder=0)
        axis.axhline(original * 100 - budget, color="#2ca02c", linestyle="--", linewidth=1.2, zorder=1)
        axis.axhline(original * 100, color="0.6", linestyle=":", linewidth=1, zorder=1)
        xs = [r["latency_ms"]["p50"] for r in at_size]
        axis.set_xscale("log")
        axis.set_xlim(min(xs) / 2.5, max(xs) * 4.0)
        axis.set_ylim(low, high)
        axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
        axis.text(0.02, (original * 100 - budget - low) / (high - low) - 0.01, f"budget: -{budget} pt",
                  transform=axis.transAxes, va="top", fontsize=9, color="#2ca02c")
        points = []
        for row in at_size:
            x, y = row["latency_ms"]["p50"], row["accuracy"] * 100
            is_original = row["artifact"] == "original"
            area = _marker_area(row["size_bytes"], largest) * (1.6 if is_original else 1.0)
            axis.scatter(x, y, s=area, c=_BACKEND_COLORS.get(row["backend"], "0.4"), alpha=0.75, zorder=3,
                         marker="*" if is_original else _PRECISION_MARKERS.get(row["precision"], "D"),
                         edgecolors="black" if is_original else "white", linewidths=1.5 if is_original else 0.8)
            is_pick = row["artifact"] == pick.get("artifact")
            if is_pick:  # a ring around the deployable artifact
                axis.scatter(x, y, s=area * 2.4, facecolors="none", edgecolors="#2ca02c", linewidths=2.2, zorder=4)
            speed = "" if is_original or row.get("speedup_vs_original") is None else \
                f"  {row['speedup_vs_original']:.1f}x"
            points.append((x, y, area, f"{row['artifact']}{speed}{'  (deploy)' if is_pick else ''}", is_original,
                           is_pick))
        labels.append((axis, points))
        axis.set_title(f"batch {size}", fontsize=11)
        axis.set_xlabel("p50 latency per batch (ms, log scale)")
        axis.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    handles = [Line2D([], [], marker="*", color="w", markerfacecolor=_BACKEND_COLORS["torch"],
                      markeredgecolor="black", markersize=14, label="original (PyTorch eager)")]
    handles += [Line2D([], [], marker="o", color="w", markerfacecolor=color, markersize=9, label=backend)
                for backend, color in _BACKEND_COLORS.items() if any(r["backend"] == backend for r in rows)]
    handles += [Line2D([], [], marker=marker, color="w", markerfacecolor="0.5", markersize=9, label=precision)
                for precision, marker in _PRECISION_MARKERS.items() if any(r["precision"] == precision for r in rows)]
    handles.append(Line2D([], [], color="#2ca02c", linestyle="--", label=f"budget: ≤ {budget} pt below original"))
    if pick.get("artifact"):
        handles.append(Line2D([], [], marker="o", color="w", markerfacecolor="none", markeredgecolor="#2ca02c",
                              markeredgewidth=2, markersize=13, label="picked for CPU deployment"))
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), frameon=False, fontsize=9)
    machine = bench.get("machine", {})
    figure.suptitle(f"{report.get('recipe', '')}: accuracy vs latency · marker area ∝ file size "
                    f"({_size(largest)} largest) · {machine.get('cpu', '?')}, {machine.get('threads', '?')} threads"
                    f" · labels: speedup vs original", fontsize=12)
    figure.tight_layout(rect=(0, 0.07, 1, 0.95))
    for axis, points in labels:  # after the layout is final, so boxes are where they will be drawn
        _place_labels(figure, axis, points)
    path = Path(run_dir) / "report.png"
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=110)
    plt.close(figure)
    write_bytes_atomic(path, image.getbuffer())
    return path
