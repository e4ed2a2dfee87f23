"""RUN/report-task.png: what a person reads a model by, drawn from report.json (matplotlib, headless).

A classifier: left, the original model's confusion matrix on the test split (rows: true class, normalized per
row, so a class the model confuses stands out whatever its size); right, the macro one-vs-rest ROC curve of
every artifact with its AUC, so an optimized artifact that ranks worse than the original shows even where
top-1 does not move.

A detector: left, every artifact's precision-recall curve at IoU 0.5 (COCO's, whose mean is mAP@0.5); right,
AP@0.5 per class for every artifact: where INT8 loses one class outright (the failure the field's trackers
report as "0 mAP for most classes") it shows there even when the mean barely moves.

Tasks without such a picture (reconstruction) get none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import write_bytes_atomic
from edgepipe.run import ORIGINAL, TASK_PNG

ANNOTATE_MAX_CLASSES = 12  # beyond this the cell numbers are too small to read


def write_task_plot(run_dir: Path, report: dict[str, Any]) -> Path | None:
    """Write RUN/report-task.png for a classifier's or a detector's eval report; None when there is nothing to
    draw."""
    rows = [r for r in report.get("artifacts", []) if "metrics" in r]
    original = next((r for r in rows if r["name"] == ORIGINAL), None)
    task = (report.get("task") or {}).get("name", "classification")
    if original is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    if task == "detection" and (original["metrics"].get("coco") or {}).get("pr50"):
        return _save(_detection_figure(report, rows), run_dir)
    if task != "classification" or original["metrics"].get("confusion") is None:
        return None
    import matplotlib.pyplot as plt

    labels = report.get("dataset", {}).get("labels") or [str(i) for i in range(len(original["metrics"]["confusion"]))]
    confusion = np.asarray(original["metrics"]["confusion"], np.float64)
    normalized = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.8))
    image = left.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(labels))
    left.set_xticks(ticks, labels, rotation=45 if max(map(len, labels)) > 3 else 0, ha="right", fontsize=8)
    left.set_yticks(ticks, labels, fontsize=8)
    left.set_xlabel("predicted class")
    left.set_ylabel("true class")
    if len(labels) <= ANNOTATE_MAX_CLASSES:
        for (i, j), value in np.ndenumerate(confusion):
            if value:
                left.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=8,
                          color="white" if normalized[i, j] > 0.5 else "black")
    left.set_title(f"original: confusion matrix ({int(confusion.sum())} test samples; colour: share of the true "
                   "class)", fontsize=10)
    figure.colorbar(image, ax=left, fraction=0.046, pad=0.04)

    for row in rows:
        roc = row["metrics"].get("roc")
        if not roc:
            continue
        is_original = row["name"] == ORIGINAL
        auc = row["metrics"].get("auc")
        right.plot(roc["fpr"], roc["tpr"], linewidth=2.4 if is_original else 1.3,
                   color="black" if is_original else None, linestyle="-" if is_original else "--",
                   label=f"{row['name']} (AUC {auc:.4f})" if auc is not None else row["name"], zorder=3 if
                   is_original else 2)
    right.set_xscale("log")  # good classifiers differ at FPRs of 0.1-1 %, invisible on a linear axis
    right.set_xlim(1e-3, 1)
    low = min((min(r["metrics"]["roc"]["tpr"][1:]) for r in rows if r["metrics"].get("roc")), default=0.0)
    if low < 0.5:  # the diagonal is only in view for a weak classifier
        chance = np.logspace(-3, 0, 50)
        right.plot(chance, chance, color="0.7", linestyle=":", linewidth=1, label="chance")
    right.set_ylim(max(0.0, low - 0.05), 1.005)
    right.set_xlabel("false positive rate (log scale)")
    right.set_ylabel("true positive rate")
    right.set_title("macro one-vs-rest ROC of every artifact", fontsize=10)
    right.grid(True, alpha=0.3)
    right.legend(loc="lower right", fontsize=8)
    figure.suptitle(f"{report.get('recipe', '')}: {report.get('dataset', {}).get('name', '')} test split",
                    fontsize=12)
    figure.tight_layout()
    return _save(figure, run_dir)


def _save(figure: Any, run_dir: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    path = Path(run_dir) / TASK_PNG
    write_bytes_atomic(path, buffer.getbuffer())
    return path


def _detection_figure(report: dict[str, Any], rows: list[dict[str, Any]]) -> Any:
    import matplotlib.pyplot as plt

    drawn = [r for r in rows if (r["metrics"].get("coco") or {}).get("pr50")]
    count = len(report.get("dataset", {}).get("labels") or drawn[0]["metrics"].get("per_class_ap50") or [])
    height = min(max(5.8, 0.04 * count * len(drawn) + 2.0), 40.0)  # COCO's 80 classes x 7 artifacts: bars readable
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, height), gridspec_kw={"width_ratios": [1, 1.15]})
    colors = {row["name"]: plt.get_cmap("tab10")(index % 10) for index, row in enumerate(drawn)}
    for row in drawn:
        is_original = row["name"] == ORIGINAL
        curve = row["metrics"]["coco"]["pr50"]
        left.plot(curve["recall"], curve["precision"], linewidth=2.4 if is_original else 1.3,
                  color="black" if is_original else colors[row["name"]], linestyle="-" if is_original else "--",
                  label=f"{row['name']} (mAP@0.5 {100 * row['metrics']['map50']:.2f})", zorder=3 if is_original else 2)
    low = min(min(r["metrics"]["coco"]["pr50"]["precision"][:91]) for r in drawn)  # up to recall 0.9
    left.set_xlim(0, 1.0)
    left.set_ylim(max(0.0, min(low, 0.9) - 0.05), 1.005)
    left.set_xlabel("recall")
    left.set_ylabel("precision (mean over classes)")
    left.set_title("precision-recall at IoU 0.5 of every artifact (COCO's 101 points)", fontsize=10)
    left.grid(True, alpha=0.3)
    left.legend(loc="lower left", fontsize=8)

    labels = report.get("dataset", {}).get("labels") or []
    per_class = {row["name"]: row["metrics"].get("per_class_ap50") or {} for row in drawn}
    classes = labels or sorted({name for values in per_class.values() for name in values})
    ys = np.arange(len(classes))
    step = 0.8 / max(len(drawn), 1)
    for index, row in enumerate(drawn):
        values = [per_class[row["name"]].get(name) for name in classes]
        shown = [(y, v) for y, v in zip(ys, values, strict=True) if v is not None]
        if not shown:
            continue
        is_original = row["name"] == ORIGINAL
        right.barh([y - 0.4 + step * (index + 0.5) for y, _ in shown], [100 * v for _, v in shown], height=step,
                   color="0.25" if is_original else colors[row["name"]], label=row["name"])
    known = [v for values in per_class.values() for v in values.values() if v is not None]
    right.set_xlim(max(0.0, 100 * min(known) - 5) if known and min(known) > 0.5 else 0, 100.5)
    right.set_yticks(ys, [str(name) for name in classes], fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("AP@0.5 (%)")
    right.set_ylabel("class")
    right.set_title("AP@0.5 per class (a class lost by an artifact shows here)", fontsize=10)
    right.grid(True, axis="x", alpha=0.3)
    right.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # beside the bars
    samples = report.get("dataset", {}).get("test_samples")
    figure.suptitle(f"{report.get('recipe', '')}: {report.get('dataset', {}).get('name', '')} test split"
                    + (f" ({samples} images)" if samples else ""), fontsize=12)
    figure.tight_layout()
    return figure
