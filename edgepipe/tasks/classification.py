"""Classification: class logits out, top-1 the budgeted metric (in points), plus what the field reports beside
it (top-5, macro ROC AUC, per-class precision and recall, the confusion matrix)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepipe.tasks.base import Task

CONFUSION_MAX_CLASSES = 100  # a 1000-class matrix is a million numbers; the report keeps its summaries only
# False-positive rates the macro ROC curve is kept at: log-spaced, since a good classifier's curve differs from
# another's at FPRs of 0.1-1 %, which a linear grid skips (and report.json stays small)
ROC_GRID = np.concatenate([[0.0], np.logspace(-3, 0, 50)])


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def macro_auc(logits: np.ndarray, labels: np.ndarray) -> float | None:
    """One-vs-rest ROC AUC averaged over classes (None when a class is missing from the labels)."""
    from sklearn.metrics import roc_auc_score

    probabilities = softmax(np.asarray(logits, np.float64))
    try:
        if probabilities.shape[1] == 2:
            return float(roc_auc_score(labels, probabilities[:, 1]))
        return float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    except ValueError:
        return None


def macro_roc(logits: np.ndarray, labels: np.ndarray) -> dict[str, list[float]] | None:
    """The one-vs-rest ROC curve averaged over classes (each class's TPR interpolated at ROC_GRID), for the
    report's picture; None when a class is missing from the labels."""
    from sklearn.metrics import roc_curve

    probabilities = softmax(np.asarray(logits, np.float64))
    labels = np.asarray(labels)
    classes = range(probabilities.shape[1]) if probabilities.shape[1] > 2 else [1]
    curves = []
    for k in classes:
        positive = labels == k
        if positive.all() or not positive.any():
            return None
        fpr, tpr, _ = roc_curve(positive, probabilities[:, k])
        curves.append(np.interp(ROC_GRID, fpr, tpr))
    return {"fpr": ROC_GRID.round(4).tolist(), "tpr": np.mean(curves, axis=0).round(5).tolist()}


class Classification(Task):
    name = "classification"
    metric = "accuracy"
    metric_label = "top-1"
    unit = "pts"
    default_max_drop = 0.5
    agreement_label = "top-1 agreement"
    agreement_column = "agreement"
    distill_kind = "logits-kl"
    distill_uses_temperature = True

    def targets(self, split) -> np.ndarray:
        return split.y

    def loss(self, config):
        from torch import nn

        return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def distill_loss(self, temperature: float):
        """KL(teacher || student) on temperature-softened logits, times T^2 so its gradients keep the task loss's
        scale whatever T (Hinton et al. 2015, section 2)."""
        from torch.nn import functional as F

        def kl_on_softened_logits(student, teacher):
            return F.kl_div(F.log_softmax(student / temperature, dim=-1), F.log_softmax(teacher / temperature, dim=-1),
                            reduction="batchmean", log_target=True) * temperature ** 2
        return kl_on_softened_logits

    def export_agreement_floor(self, config) -> float | None:
        return config.min_agreement

    def resolution(self, samples: int) -> float:
        return 100.0 / samples if samples else float("inf")

    def metrics(self, outputs: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict[str, Any]:
        from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

        classes = outputs.shape[1]
        result: dict[str, Any] = {"accuracy": self.score(outputs, targets), "auc": macro_auc(outputs, targets)}
        if classes > 5:
            top5 = np.argsort(-outputs, axis=1, kind="stable")[:, :5]
            result["top5"] = float((top5 == np.asarray(targets)[:, None]).any(1).mean())
        indices = list(range(classes))
        predicted = outputs.argmax(1)
        precision, recall, _, support = precision_recall_fscore_support(targets, predicted, labels=indices,
                                                                        zero_division=0)
        names = [labels[i] if i < len(labels) else str(i) for i in indices]
        result["per_class"] = {name: {"precision": float(p), "recall": float(r), "support": int(s)}
                               for name, p, r, s in zip(names, precision, recall, support, strict=True)}
        if classes <= CONFUSION_MAX_CLASSES:  # rows: true class, columns: predicted (sklearn's convention)
            result["confusion"] = confusion_matrix(targets, predicted, labels=indices).tolist()
        result["roc"] = macro_roc(outputs, targets)
        return result

    def degenerate(self, outputs: np.ndarray, targets: np.ndarray, labels: list[str]) -> str | None:
        classes = len(labels)
        if classes < 2 or len(targets) != len(outputs) or outputs.ndim != 2 or outputs.shape[1] != classes:
            return None
        accuracy = self.score(outputs, targets)
        chance = 1.0 / classes
        # within two standard errors of guessing on this many samples: indistinguishable from chance
        if accuracy <= chance + 2 * (chance * (1 - chance) / len(targets)) ** 0.5:
            return (f"test accuracy {accuracy:.1%} is at chance for {classes} classes ({chance:.1%} on "
                    f"{len(targets)} samples): the model learned nothing useful; check the data, the learning rate "
                    "or start from pretrained weights")
        return None

    def report_columns(self):
        return [("AUC", lambda m: "—" if m.get("auc") is None else f"{m['auc']:.4f}")]

    def format_score(self, value: float | None) -> str:
        return "—" if value is None else f"{value:.2%}"

    def format_agreement(self, value: float | None) -> str:
        return "—" if value is None else f"{value:.2%}"

    def predictions(self, outputs: np.ndarray, inputs: np.ndarray, labels: list[str], top_k: int
                    ) -> list[dict[str, Any]]:
        """What `infer` says of each sample: its top-k classes with their softmax probabilities."""
        results = []
        for row in softmax(np.asarray(outputs, np.float64)):
            order = np.argsort(-row, kind="stable")[: min(top_k, len(row))]
            results.append({"top": [{"index": int(i), "label": labels[i] if i < len(labels) else str(i),
                                     "probability": float(row[i])} for i in order]})
        return results
