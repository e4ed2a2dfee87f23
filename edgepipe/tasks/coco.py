"""COCO's own numbers for a detector, from pycocotools: the report's summary beside the device runtime's numpy mAP
(:func:`edgepipe.device.scoring.detection_map`, which reproduces COCOeval's bbox mAP and is cross-checked against
this function in tests/unit/test_detection_metric.py).

Detections are ``[N, K, 6]`` rows of x1, y1, x2, y2, score, class and targets ``[N, M, 5]`` rows of x1, y1, x2, y2,
class, in input pixels; rows of class < 0 are padding. Class i is COCO category i + 1 (``labels[i]``); rows of a
class past the labels are left out (COCOeval skips categories it was not given). Object ids start at 1: COCOeval's
match tables use 0 for "unmatched", so an object with id 0 could never be found.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

# COCOeval.summarize's 12 bbox stats, in its order (AP, AP50, AP75, AP small / medium / large, AR@1, AR@10, AR@100,
# AR small / medium / large; the area and 0.5:0.95 ones at maxDets 100)
STATS = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large",
         "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")


def _rows(array: np.ndarray, num_classes: int):
    """(image, x, y, w, h, class, row) of each real row of class < num_classes, in image then row order."""
    for image, row in zip(*np.nonzero((array[..., -1] >= 0) & (array[..., -1] < num_classes)), strict=True):
        x1, y1, x2, y2 = (float(v) for v in array[image, row, :4])
        yield int(image), x1, y1, x2 - x1, y2 - y1, int(array[image, row, -1]), array[image, row]


def coco_metrics(detections: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> dict:
    """pycocotools' COCOeval (bbox) of detections against targets: the 12 summary stats under :data:`STATS` and
    "per_class_ap50" (one per label); None where COCO says -1 (no ground truth of that class / size)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dets, gts = np.asarray(detections, np.float64), np.asarray(targets, np.float64)
    if not len(gts):
        return {**dict.fromkeys(STATS), "per_class_ap50": [None] * len(labels)}
    annotations = [{"id": i + 1, "image_id": image, "category_id": cls + 1, "bbox": [x, y, w, h], "area": w * h,
                    "iscrowd": 0} for i, (image, x, y, w, h, cls, _) in enumerate(_rows(gts, len(labels)))]
    results = [{"image_id": image, "category_id": cls + 1, "bbox": [x, y, w, h], "score": float(row[4])}
               for image, x, y, w, h, cls, row in _rows(dets, len(labels))]
    if not results:
        # loadRes fails on an empty list. One zero-size box matches nothing: with no true positive every AP and AR
        # is 0 where there is ground truth and -1 elsewhere, as for no detections.
        results = [{"image_id": 0, "category_id": 1, "bbox": [0.0, 0.0, 0.0, 0.0], "score": 0.0}]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {"images": [{"id": i} for i in range(len(gts))], "annotations": annotations,
                         "categories": [{"id": i + 1, "name": str(name)} for i, name in enumerate(labels)]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    metrics: dict = {name: None if value == -1 else float(value) for name, value in zip(STATS, evaluation.stats,
                                                                                       strict=True)}
    precision = evaluation.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, [recall, class], area all, maxDets 100
    metrics["per_class_ap50"] = [None if (column == -1).all() else float(column.mean()) for column in precision.T]
    # the precision-recall curve at IoU 0.5 behind mAP@0.5: COCO's 101 recall points, classes with ground truth
    # averaged (its mean is map50); report-task.png draws it per artifact
    present = precision[:, (precision != -1).any(axis=0)]
    if present.size:
        metrics["pr50"] = {"recall": [round(float(r), 2) for r in evaluation.params.recThrs],
                           "precision": [round(float(v), 4) for v in present.clip(min=0).mean(axis=1)]}
    return metrics
