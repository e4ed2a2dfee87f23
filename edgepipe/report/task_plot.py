"""RUN/report-task.png: what a person reads a classifier by, drawn from report.json (matplotlib, headless).

Left, the original model's confusion matrix on the test split (rows: true class, normalized per row, so a
class the model confuses stands out whatever its size); right, the macro one-vs-rest ROC curve of every
artifact with its AUC, so an optimized artifact that ranks worse than the original shows even where top-1
does not move. Tasks without such a picture (reconstruction) get none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import write_bytes_atomic
from edgepipe.run import ORIGINAL, TASK_PNG

ANNOTATE_MAX_CLASSES = 12  # beyond this the cell numbers are too small to read


def write_task_plot(run_dir: Path, report: dict[str, Any]) -> Path | None:
    """Write RUN/report-task.png for a classifier's eval report; None when there is nothing to draw."""
    rows = [r for r in report.get("artifacts", []) if "metrics" in r]
    original = next((r for r in rows if r["name"] == ORIGINAL), None)
    if (report.get("task") or {}).get("name", "classification") != "classification" or original is None \
            or original["metrics"].get("confusion") is None:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
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
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    path = Path(run_dir) / TASK_PNG
    write_bytes_atomic(path, buffer.getbuffer())
    return path
