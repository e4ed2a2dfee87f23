"""RUN/report.png: the task's score vs latency, one panel per batch size (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from edgepipe.artifacts import write_bytes_atomic
from edgepipe.report.tables import human_size, task_of_report
from edgepipe.run import ORIGINAL, REPORT_PNG

_BACKEND_COLORS = {"torch": "#d62728", "onnxruntime": "#1f77b4", "openvino": "#9467bd", "tensorrt": "#2ca02c"}
_BACKEND_TAGS = {"onnxruntime": "ort", "openvino": "ov", "tensorrt": "trt"}  # in point labels, beside the name
_PRECISION_MARKERS = {"fp32": "o", "fp16": "^", "int8": "s"}


def _marker_area(size_bytes: float, largest: float) -> float:
    return 60.0 + 900.0 * (size_bytes / largest) if largest else 60.0


# label offsets (points) tried in order: right, then left, then further up/down, until a label overlaps nothing
_LABEL_OFFSETS = [(14, 8), (14, -16), (-14, 8), (-14, -16), (16, -4), (-16, -4), (14, 24), (14, -32),
                  (-14, 24), (-14, -32), (0, 40), (0, -48), (40, 16), (40, -24), (-40, 16), (-40, -24),
                  # farther out, for a crowded corner (two runtimes put every ONNX file on the plot twice)
                  (0, 64), (0, -72), (60, 40), (60, -48), (-60, 40), (-60, -48), (24, 88), (-24, 88), (24, -96),
                  (-24, -96)]
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
    """RUN/report.png: the task's score (top-1, PSNR) vs p50 latency (log x), one panel per batch size, marker
    area by file size, the original highlighted, the budget drawn. None when there is nothing scored to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator

    bench = report.get("bench") or {}
    task = task_of_report(report)
    per_unit = task.scores.per_unit  # a score in the budget's unit: accuracy x 100 = points, PSNR in dB as it is
    rows = [r for r in bench.get("rows", []) if r.get("score") is not None]
    original = report.get("original", {}).get("score")
    if not rows or original is None:
        return None
    original *= per_unit
    sizes = sorted({r["batch"] for r in rows})[:3]
    budget = float(report["max_drop"])  # eval's, as edgepipe.tasks.budget decided it
    largest = max(r["size_bytes"] for r in rows)
    scores = [r["score"] * per_unit for r in rows]
    low, high = min(min(scores), original - budget), max(max(scores), original)
    pad = 0.3 * budget + 0.15 * (high - low)  # room for labels above the top and below the bottom points
    low, high = low - pad, high + pad
    pick = (bench.get("deployable") or {}).get("cpu") or {}
    # the same file on two runtimes is two points: then a label names the runtime too
    tagged = len({r["backend"] for r in rows if r["backend"] in ("onnxruntime", "openvino")}) > 1
    figure, axes = plt.subplots(1, len(sizes), figsize=(max(6.4 * len(sizes), 11.0), 5.4), sharey=True, squeeze=False)
    labels = []
    for axis, size in zip(axes[0], sizes, strict=True):
        at_size = sorted((r for r in rows if r["batch"] == size), key=lambda r: r["latency_ms"]["p50"])
        axis.axhspan(original - budget, high, color="#2ca02c", alpha=0.07, zorder=0)
        axis.axhline(original - budget, color="#2ca02c", linestyle="--", linewidth=1.2, zorder=1)
        axis.axhline(original, color="0.6", linestyle=":", linewidth=1, zorder=1)
        xs = [r["latency_ms"]["p50"] for r in at_size]
        axis.set_xscale("log")
        axis.set_xlim(min(xs) / 2.5, max(xs) * 4.0)
        axis.set_ylim(low, high)
        axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
        axis.text(0.02, (original - budget - low) / (high - low) - 0.01, f"budget: -{budget} {task.unit}",
                  transform=axis.transAxes, va="top", fontsize=9, color="#2ca02c")
        points = []
        for row in at_size:
            x, y = row["latency_ms"]["p50"], row["score"] * per_unit
            is_original = row["name"] == ORIGINAL
            area = _marker_area(row["size_bytes"], largest) * (1.6 if is_original else 1.0)
            axis.scatter(x, y, s=area, c=_BACKEND_COLORS.get(row["backend"], "0.4"), alpha=0.75, zorder=3,
                         marker="*" if is_original else _PRECISION_MARKERS.get(row["precision"], "D"),
                         edgecolors="black" if is_original else "white", linewidths=1.5 if is_original else 0.8)
            is_pick = (row["name"], row["backend"]) == (pick.get("name"), pick.get("backend"))
            if is_pick:  # a ring around the deployable artifact
                axis.scatter(x, y, s=area * 2.4, facecolors="none", edgecolors="#2ca02c", linewidths=2.2, zorder=4)
            speed = "" if is_original or row.get("speedup_vs_original") is None else \
                f"  {row['speedup_vs_original']:.1f}x" + ("?" if row.get("speedup_unreliable") else "")
            tag = f" ({_BACKEND_TAGS[row['backend']]})" if tagged and row["backend"] in _BACKEND_TAGS else ""
            points.append((x, y, area, f"{row['name']}{tag}{speed}{'  (deploy)' if is_pick else ''}", is_original,
                           is_pick))
        labels.append((axis, points))
        axis.set_title(f"batch {size}", fontsize=11)
        axis.set_xlabel("p50 latency per batch (ms, log scale)")
        axis.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel(f"test {task.metric_label} ({'%' if task.unit == 'pts' else task.unit})")
    handles = [Line2D([], [], marker="*", color="w", markerfacecolor=_BACKEND_COLORS["torch"],
                      markeredgecolor="black", markersize=14, label="original (PyTorch eager)")]
    handles += [Line2D([], [], marker="o", color="w", markerfacecolor=color, markersize=9, label=backend)
                for backend, color in _BACKEND_COLORS.items() if any(r["backend"] == backend for r in rows)]
    handles += [Line2D([], [], marker=marker, color="w", markerfacecolor="0.5", markersize=9, label=precision)
                for precision, marker in _PRECISION_MARKERS.items() if any(r["precision"] == precision for r in rows)]
    handles.append(Line2D([], [], color="#2ca02c", linestyle="--",
                          label=f"budget: ≤ {budget} {task.unit} below original"))
    if pick.get("name"):
        handles.append(Line2D([], [], marker="o", color="w", markerfacecolor="none", markeredgecolor="#2ca02c",
                              markeredgewidth=2, markersize=13, label="picked for CPU deployment"))
    columns = len(handles) if len(handles) <= 8 else (len(handles) + 1) // 2  # one row, or two even ones
    figure.legend(handles=handles, loc="lower center", ncol=columns, frameon=False, fontsize=9)
    machine = bench.get("machine", {})
    breaks = "\n" if len(sizes) == 1 else " · "  # one panel is too narrow for the title on one line
    figure.suptitle(f"{report.get('recipe', '')}: {task.metric_label} vs latency{breaks}marker area ∝ file size "
                    f"({human_size(largest)} largest) · {machine.get('cpu', '?')}, "
                    f"{machine.get('threads', '?')} threads · labels: speedup vs original (?: unreliable)",
                    fontsize=12)
    figure.tight_layout(rect=(0, 0.07, 1, 0.95 if len(sizes) > 1 else 0.92))
    for axis, points in labels:  # after the layout is final, so boxes are where they will be drawn
        _place_labels(figure, axis, points)
    path = Path(run_dir) / REPORT_PNG
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=110)
    plt.close(figure)
    write_bytes_atomic(path, image.getbuffer())
    return path
