"""Object detection: decoded boxes out (the detector's graph ends in its decode), mAP@0.5 the budgeted metric (COCO's
definition, in points), mAP@0.5:0.95 and COCO's other summaries reported beside it, and "box agreement" (same class,
IoU >= 0.5) the counterpart of a classifier's top-1 agreement.

Outputs reach the task packed as one array ``[N, K, 6]`` (x1, y1, x2, y2, score, class; class -1 for an empty row)
by :func:`edgepipe.device.scoring.model_outputs`, targets as ``[N, M, 5]`` (x1, y1, x2, y2, class). The mAP the
budget judges is the device runtime's numpy implementation (a bundle evaluated on a Jetson agrees by construction),
cross-checked against pycocotools in the tests; the report adds pycocotools' own summary.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepipe.device.scoring import DISPLAY_SCORE  # what `infer` draws and box agreement compares
from edgepipe.errors import EdgepipeError
from edgepipe.tasks.base import Task

MIN_USEFUL_MAP50 = 0.05  # below this a detector finds next to nothing
PARITY_SCORE = 0.05  # detections an export must reproduce box for box (5x the default decode threshold)


class Detection(Task):
    name = "detection"
    metric = "map50"
    metric_label = "mAP@0.5"
    unit = "pts"
    default_max_drop = 1.0
    agreement_label = "box agreement"
    agreement_column = "box agreement"
    moves_with_inputs = True  # pixel augmentation would move objects away from their boxes
    distill_kind = "head-maps-mse-l1"

    def targets(self, split) -> np.ndarray:
        y = np.asarray(split.y)
        if y.ndim != 3 or y.shape[-1] != 5:
            raise EdgepipeError("detection needs box targets [N, objects, 5] (x1, y1, x2, y2, class); dataset "
                                f"'{getattr(split, 'name', 'this')}' gives labels of shape {y.shape}: use a detection "
                                "dataset (mnist-canvas)")
        return y.astype(np.float32)

    def loss(self, config):
        size = self.preprocessing.get("size")
        if not size:
            raise EdgepipeError("detection needs the dataset's image size in its preprocessing record")
        return CenterNetLoss((int(size[0]), int(size[1])))

    def teacher_outputs(self, teacher, inputs):
        """The raw head maps the training loss reads: in eval mode a detector returns decoded boxes, so ask for the
        maps themselves (edgepipe.models.detector.CenterNet.raw)."""
        if not callable(getattr(teacher, "raw", None)):
            raise EdgepipeError(f"detection distillation reads the teacher's raw head maps, which "
                                f"{type(teacher).__name__} does not give (no raw(x) method, as centernet has); "
                                "set distill: off")
        heatmap, box = teacher.raw(inputs)
        return {"heatmap": heatmap, "box": box}

    def distill_loss(self, temperature: float):
        return HeadMapDistillation()

    def drop_interval(self, reference_outputs: np.ndarray, outputs: np.ndarray, targets: np.ndarray) -> float:
        """A paired bootstrap over images (mAP is no mean of per-image scores): the same resampled images judge
        both models, 200 times."""
        from edgepipe.device.scoring import detection_map_drop_interval

        return float(detection_map_drop_interval(reference_outputs, outputs, targets))

    def resolution(self, samples: int) -> float:
        """About one image's worth of mAP (an image holds one to a few objects): the drop a set of this many images
        can show, and the margin within which a later, more trained checkpoint ties the best one (selecting by
        mAP@0.5 alone stopped at a mid-schedule epoch with mAP@0.5:0.95 7 points below the last one)."""
        return 100.0 / samples if samples else float("inf")

    def agreement(self, reference_outputs: np.ndarray, outputs: np.ndarray) -> float:
        from edgepipe.device.scoring import box_agreement

        return float(box_agreement(outputs, reference_outputs, min_score=DISPLAY_SCORE))

    def parity_pair(self, reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each reference detection scoring >= PARITY_SCORE beside the candidate's detection of the same class that
        overlaps it most (zeros when there is none, so a lost box fails the tolerance): [score, x1, y1, x2, y2]
        pairs. Two backends may order near-equal scores differently in TopK, and a score at the decode's threshold
        may fall either side of it, so rows are matched rather than compared by position."""
        from edgepipe.device.scoring import box_iou

        reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
        kept, found = [], []
        for wanted, offered in zip(reference, candidate, strict=True):
            wanted = wanted[(wanted[:, 5] >= 0) & (wanted[:, 4] >= PARITY_SCORE)]
            offered = offered[offered[:, 5] >= 0]
            overlap = box_iou(wanted[:, :4], offered[:, :4]) * (wanted[:, None, 5] == offered[None, :, 5])
            for row, ious in zip(wanted, overlap, strict=True):
                best = int(np.argmax(ious)) if ious.size else -1
                match = offered[best] if best >= 0 and ious[best] > 0 else np.zeros(6)
                if best >= 0:
                    overlap[:, best] = 0  # each candidate row answers one reference row
                kept.append(row[[4, 0, 1, 2, 3]])
                found.append(match[[4, 0, 1, 2, 3]])
        return np.array(kept).reshape(-1, 5), np.array(found).reshape(-1, 5)

    def export_agreement_floor(self, config) -> float | None:
        return config.min_agreement

    def metrics(self, outputs: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict[str, Any]:
        from edgepipe.device.scoring import detection_map
        from edgepipe.tasks.coco import coco_metrics

        ours = detection_map(outputs, targets, num_classes=len(labels))
        per_class = ours.get("per_class_ap50") or []
        return {"map50": float(ours["map50"]), "map50_95": float(ours["map50_95"]),
                "per_class_ap50": {labels[i] if i < len(labels) else str(i): value
                                   for i, value in enumerate(per_class)},
                "detections_per_image": float((outputs[..., 5] >= 0).sum() / max(len(outputs), 1)),
                "coco": coco_metrics(outputs, targets, labels)}

    def degenerate(self, outputs: np.ndarray, targets: np.ndarray, labels: list[str]) -> str | None:
        if outputs.ndim != 3 or outputs.shape[-1] != 6:
            return None
        value = self.score(outputs, targets)
        if value < MIN_USEFUL_MAP50:
            return (f"test mAP@0.5 {value:.3f}: the detector finds next to nothing; check the boxes, train longer or "
                    "start from pretrained weights")
        return None

    def report_columns(self):
        return [("mAP@.5:.95", lambda m: f"{100 * m['map50_95']:.2f}"),
                ("AR@100", lambda m: "—" if (m.get("coco") or {}).get("ar100") is None
                 else f"{100 * m['coco']['ar100']:.2f}")]

    def format_score(self, value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.2f}"

    def format_agreement(self, value: float | None) -> str:
        return "—" if value is None else f"{value:.2%}"

    def predictions(self, outputs: np.ndarray, inputs: np.ndarray, labels: list[str], top_k: int
                    ) -> list[dict[str, Any]]:
        """What `infer` says of each image: its detections at score >= DISPLAY_SCORE, best first."""
        results = []
        for rows in np.asarray(outputs, np.float64):
            shown = rows[(rows[:, 5] >= 0) & (rows[:, 4] >= DISPLAY_SCORE)]
            shown = shown[np.argsort(-shown[:, 4], kind="stable")]
            results.append({"detections": [
                {"class": int(row[5]), "label": labels[int(row[5])] if int(row[5]) < len(labels) else str(int(row[5])),
                 "score": round(float(row[4]), 4), "box": [round(float(v), 2) for v in row[:4]]}
                for row in shown]})
        return results

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "iou_thresholds": "0.50:0.95", "max_detections": 100,
                "display_score": DISPLAY_SCORE}


class CenterNetLoss:
    """CenterNet's loss on the raw head (``{"heatmap", "box"}`` or a pair): a penalty-reduced focal loss on a
    Gaussian-splatted class heatmap, and L1 on the centre cell's offset and log size. The Gaussian's spread follows
    the box (TTFNet's alpha = 0.54 per side), so a large digit's neighbours are penalized less."""

    def __init__(self, image_size: tuple[int, int], alpha: float = 0.54, box_weight: float = 1.0) -> None:
        self.image_size, self.alpha, self.box_weight = image_size, alpha, box_weight

    def __call__(self, outputs, targets):
        import torch
        from torch.nn import functional as F

        heatmap, box = (outputs["heatmap"], outputs["box"]) if isinstance(outputs, dict) else outputs
        n, classes, h, w = heatmap.shape
        stride_y, stride_x = self.image_size[0] / h, self.image_size[1] / w
        valid = targets[..., 4] >= 0  # [N, M]
        x1, y1 = targets[..., 0] / stride_x, targets[..., 1] / stride_y
        x2, y2 = targets[..., 2] / stride_x, targets[..., 3] / stride_y
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        width, height = (x2 - x1).clamp(min=1e-3), (y2 - y1).clamp(min=1e-3)
        ix, iy = cx.floor().clamp(0, w - 1), cy.floor().clamp(0, h - 1)
        grid_x = torch.arange(w, device=heatmap.device, dtype=heatmap.dtype).view(1, 1, 1, w)
        grid_y = torch.arange(h, device=heatmap.device, dtype=heatmap.dtype).view(1, 1, h, 1)
        sigma_x = (self.alpha * width / 6).clamp(min=0.2)[..., None, None]
        sigma_y = (self.alpha * height / 6).clamp(min=0.2)[..., None, None]
        splat = torch.exp(-((grid_x - ix[..., None, None]) ** 2) / (2 * sigma_x ** 2)
                          - ((grid_y - iy[..., None, None]) ** 2) / (2 * sigma_y ** 2))  # [N, M, h, w]: 1 at centre
        one_hot = F.one_hot(targets[..., 4].clamp(min=0).long(), classes).to(heatmap.dtype) * valid[..., None]
        target = (splat[:, :, None] * one_hot[..., None, None]).amax(dim=1)  # [N, C, h, w]
        positive = target >= 1 - 1e-6
        num_positive = positive.sum().clamp(min=1)
        log_p, log_not_p = F.logsigmoid(heatmap), F.logsigmoid(-heatmap)
        p = torch.sigmoid(heatmap)
        focal = torch.where(positive, (1 - p) ** 2 * log_p, (1 - target) ** 4 * p ** 2 * log_not_p)
        heat_loss = -focal.sum() / num_positive

        cell = (iy * w + ix).long()  # [N, M]
        predicted = box.reshape(n, 4, h * w).gather(2, cell[:, None, :].expand(n, 4, cell.shape[1]))
        wanted = torch.stack([cx - ix, cy - iy, width.log(), height.log()], dim=1)  # [N, 4, M]
        box_loss = ((predicted - wanted).abs() * valid[:, None, :]).sum() / valid.sum().clamp(min=1)
        return heat_loss + self.box_weight * box_loss


class HeadMapDistillation:
    """The student's raw head maps against the teacher's: MSE on the heatmap's probabilities (a logit's value far
    below zero means the same "nothing here" at -8 as at -12, so logits themselves would chase noise), and L1 on
    the box maps weighted by the teacher's peak class probability per cell (the box branch means something only
    where the teacher sees a centre, as the task's loss reads it only at centre cells)."""

    def __call__(self, student, teacher):
        import torch

        student_heat, student_box = (student["heatmap"], student["box"]) if isinstance(student, dict) else student
        teacher_p = torch.sigmoid(teacher["heatmap"])
        heat_loss = torch.nn.functional.mse_loss(torch.sigmoid(student_heat), teacher_p)
        weight = teacher_p.amax(dim=1, keepdim=True)  # [N, 1, h, w]
        box_loss = ((student_box - teacher["box"]).abs() * weight).sum() / (weight.sum() * 4).clamp(min=1e-6)
        return heat_loss + box_loss
