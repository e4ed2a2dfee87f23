"""Detection metrics: the device runtime's numpy COCO mAP against pycocotools, its bootstrap and box agreement."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.device.scoring import box_agreement, box_iou, detection_map, detection_map_drop_interval
from edgepipe.tasks.coco import STATS, coco_metrics


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Detections [N, K, 6] and targets [N, 8, 5] as a detector meets them: jittered, duplicated and misclassified
    copies of the objects, false positives, tied scores, padding between rows, images without objects or
    detections, classes with detections only, now and then identical objects and all-padding arrays."""
    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(1, 51)), int(rng.integers(1, 6))
    object_classes = max(1, classes - int(seed % 3 == 0))  # the last class, now and then: detections only
    targets = np.full((n, 8, 5), -1.0)
    per_image = []
    for i in range(n):
        count = 0 if rng.random() < 0.15 else int(rng.integers(0, 9))
        for slot in rng.choice(8, count, replace=False):
            x, y, w, h = *rng.uniform(0, 300, 2), *rng.uniform(2, 150, 2)  # small, medium and large
            targets[i, slot] = [x, y, x + w, y + h, rng.integers(object_classes)]
        objects = targets[i][targets[i, :, 4] >= 0]
        if len(objects) >= 2 and rng.random() < 0.1:
            targets[i, np.nonzero(targets[i, :, 4] < 0)[0][:1]] = objects[0]  # two identical objects
        rows = []
        for box in objects if rng.random() > 0.15 else []:
            for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3]))):  # missed, found, found twice or more
                size = np.tile(box[2:4] - box[:2], 2)
                x1, y1, x2, y2 = box[:4] + rng.normal(0, rng.choice([0.02, 0.1, 0.25]), 4) * size
                cls = box[4] if rng.random() < 0.9 else rng.integers(classes)
                rows.append([x1, y1, max(x2, x1 + 0.5), max(y2, y1 + 0.5), 0.0, cls])
        for _ in range(int(rng.integers(0, 4))):  # false positives
            x, y, w, h = *rng.uniform(0, 300, 2), *rng.uniform(2, 150, 2)
            rows.append([x, y, x + w, y + h, 0.0, rng.integers(classes)])
        for row in rows:  # ties, often
            row[4] = rng.choice([0.3, 0.5, 0.9]) if rng.random() < 0.4 else rng.random()
        per_image.append(rows)
    k = max(len(rows) for rows in per_image) + int(rng.integers(0, 3))
    detections = np.full((n, max(k, 1), 6), -1.0)
    for i, rows in enumerate(per_image):
        if rows:
            detections[i, rng.choice(detections.shape[1], len(rows), replace=False)] = rows
    if seed % 11 == 0:
        detections[..., 5] = -1.0
    if seed % 13 == 0:
        targets[..., 4] = -1.0
    return detections.astype(np.float32), targets.astype(np.float32), classes


def _grid_case(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Boxes on a 5-pixel grid and four score levels: IoUs exactly at the thresholds (0.5, 0.75 and more), a
    detection as close to two objects, and many tied scores."""
    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(1, 20)), int(rng.integers(1, 4))

    def boxes(count):
        corners = rng.integers(0, 4, (count, 2)) * 5
        return np.hstack([corners, corners + rng.integers(1, 4, (count, 2)) * 5])

    targets, detections = np.full((n, 6, 5), -1.0), np.full((n, 12, 6), -1.0)
    for i in range(n):
        count = int(rng.integers(0, 7))
        targets[i, :count] = np.hstack([boxes(count), rng.integers(0, classes, (count, 1))])
        count = int(rng.integers(0, 13))
        detections[i, :count] = np.hstack([boxes(count), rng.integers(1, 5, (count, 1)) / 4,
                                           rng.integers(0, classes, (count, 1))])
    return detections.astype(np.float32), targets.astype(np.float32), classes


def _assert_agrees_with_pycocotools(detections, targets, classes):
    ours = detection_map(detections, targets, num_classes=classes)
    coco = coco_metrics(detections, targets, [f"class {i}" for i in range(classes)])
    for key in ("map50", "map75", "map50_95", "ar100"):
        assert ours[key] == pytest.approx(coco[key] or 0.0, abs=1e-4), key  # COCO's None (no objects): our 0.0
    assert [a is None for a in ours["per_class_ap50"]] == [b is None for b in coco["per_class_ap50"]]
    assert [a or 0.0 for a in ours["per_class_ap50"]] == pytest.approx([b or 0.0 for b in coco["per_class_ap50"]],
                                                                       abs=1e-4)
    if coco["map50"] is not None:  # the curve report-task.png draws is the one behind mAP@0.5 (4-decimal points)
        curve = coco["pr50"]
        assert len(curve["recall"]) == len(curve["precision"]) == 101 and curve["recall"][-1] == 1.0
        assert np.mean(curve["precision"]) == pytest.approx(coco["map50"], abs=1e-4)
    return ours


@pytest.mark.parametrize("seed", range(60))
def test_detection_map_is_pycocotools_mAP(seed):
    _assert_agrees_with_pycocotools(*_random_case(seed))


@pytest.mark.parametrize("seed", range(30))
def test_detection_map_is_pycocotools_mAP_at_exact_ties(seed):
    _assert_agrees_with_pycocotools(*_grid_case(seed))


def test_a_detection_as_close_to_two_objects_takes_the_later_one():
    """pycocotools keeps the last of equal IoUs (it moves on only when `ious < iou`): the wide box takes the
    second object (IoU 0.5 with each), which leaves the first to the exact box below it; in the other order the
    exact box finds its object taken. Precisions 0.5 past recall 0.5 only: 51 of 101 points read 1."""
    left, right = [0, 0, 10, 10, 0], [10, 0, 20, 10, 0]
    detections = _boxes([0, 0, 20, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0])
    assert detection_map(detections, _boxes(left, right))["map50"] == pytest.approx(1.0)
    assert detection_map(detections, _boxes(right, left))["map50"] == pytest.approx(51 / 101)
    for targets in (_boxes(left, right), _boxes(right, left)):
        _assert_agrees_with_pycocotools(detections, targets, 1)


def test_only_each_image_and_class_best_100_detections_count():
    """COCOeval's maxDets 100 is per image and class: here the true positives rank below 120 false positives."""
    rng = np.random.default_rng(7)
    targets = np.full((3, 10, 5), -1.0, np.float32)
    detections = np.full((3, 260, 6), -1.0, np.float32)
    for i in range(3):
        corners = rng.uniform(0, 200, (10, 2))
        targets[i, :, :4] = np.hstack([corners, corners + 40])
        targets[i, :, 4] = np.arange(10) % 2
        detections[i, :10] = np.hstack([targets[i, :, :4], rng.uniform(0.1, 0.5, (10, 1)), targets[i, :, 4:]])
        noise = rng.uniform(300, 400, (240, 2))
        detections[i, 10:250] = np.hstack([noise, noise + 20, rng.uniform(0.3, 1.0, (240, 1)),
                                           (np.arange(240) % 2)[:, None]])
    ours = _assert_agrees_with_pycocotools(detections, targets, 2)
    assert 0.0 < ours["recall50"] < 1.0  # some true positives fell past the 100th detection


def test_one_perfect_detection_is_an_ap_of_one():
    targets = np.array([[[10, 20, 50, 80, 0]]], np.float32)
    detections = np.array([[[10, 20, 50, 80, 0.9, 0], [0, 0, 0, 0, 0, -1]]], np.float32)
    result = detection_map(detections, targets)
    assert result["map50"] == pytest.approx(1.0) and result["map50_95"] == pytest.approx(1.0)
    assert result["per_class_ap50"] == [pytest.approx(1.0)]


def _boxes(*rows):
    return np.array([rows], np.float32)


def test_hand_computed_101_point_interpolation():
    gt_a, gt_b, miss = [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]
    # A false positive above the only true positive: precisions 0, 1/2 at recalls 0, 1; the envelope is 1/2 at
    # all 101 recall points.
    fp_first = _boxes([*miss, 0.9, 0], [*gt_a, 0.8, 0])
    assert detection_map(fp_first, _boxes([*gt_a, 0]))["map50"] == pytest.approx(0.5)
    # Two objects found as hit, miss, hit: precisions 1, 1/2, 2/3 at recalls 1/2, 1/2, 1; envelope 1, 2/3, 2/3.
    # Recall points 0.00..0.50 (51) read 1, 0.51..1.00 (50) read 2/3.
    two = _boxes([*gt_a, 0], [*gt_b, 0])
    hit_miss_hit = _boxes([*gt_a, 0.9, 0], [*miss, 0.8, 0], [*gt_b, 0.7, 0])
    assert detection_map(hit_miss_hit, two)["map50"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    # Half the objects never found: precision 0 past recall 1/2, so 51 of the 101 points read 1.
    assert detection_map(_boxes([*gt_a, 0.9, 0]), two)["map50"] == pytest.approx(51 / 101)
    for detections, targets in ((fp_first, _boxes([*gt_a, 0])), (hit_miss_hit, two), (_boxes([*gt_a, 0.9, 0]), two)):
        _assert_agrees_with_pycocotools(detections, targets, 1)


def test_classes_without_objects_are_left_out_and_no_objects_at_all_is_zero():
    targets = _boxes([0, 0, 10, 10, 0], [0, 0, 0, 0, -1])
    detections = _boxes([0, 0, 10, 10, 0.9, 0], [40, 40, 50, 50, 0.8, 2])  # class 2: detections only
    result = detection_map(detections, targets, num_classes=3)
    assert result["map50"] == pytest.approx(1.0)
    assert result["per_class_ap50"][1:] == [None, None]
    assert detection_map(detections, np.full((1, 2, 5), -1.0, np.float32))["map50"] == 0.0


def test_coco_metrics_without_detections_or_objects():
    targets = _boxes([0, 0, 10, 10, 0], [0, 0, 200, 200, 1])  # a small and a large object
    metrics = coco_metrics(np.full((1, 3, 6), -1.0, np.float32), targets, ["a", "b"])
    assert set(STATS) <= set(metrics)
    assert metrics["map50"] == 0.0 and metrics["map_small"] == 0.0 and metrics["ar100"] == 0.0
    assert metrics["map_medium"] is None and metrics["per_class_ap50"] == [0.0, 0.0]
    nothing = coco_metrics(_boxes([0, 0, 10, 10, 0.9, 0]), np.full((1, 2, 5), -1.0, np.float32), ["a"])
    assert all(nothing[name] is None for name in STATS) and nothing["per_class_ap50"] == [None]


def test_box_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    b = np.array([[5, 0, 15, 10], [10, 0, 20, 10], [0, 0, 10, 10]], np.float32)
    assert box_iou(a, b) == pytest.approx(np.array([[50 / 150, 0.0, 1.0], [0.0, 0.0, 0.0]]))  # touching: 0


def _detector(n: int, seed: int, miss: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Targets with one to four objects an image and detections of them: jittered, some moved off (missed)."""
    rng = np.random.default_rng(seed)
    targets = np.full((n, 4, 5), -1.0, np.float32)
    detections = np.full((n, 6, 6), -1.0, np.float32)
    for i in range(n):
        count = int(rng.integers(1, 5))
        corners = rng.uniform(0, 200, (count, 2))
        targets[i, :count] = np.hstack([corners, corners + rng.uniform(20, 60, (count, 2)),
                                        rng.integers(0, 3, (count, 1))])
        boxes = targets[i, :count, :4] + rng.normal(0, 2, (count, 4))
        boxes[rng.random(count) < miss] += 100  # far off: a false positive and a missed object
        detections[i, :count] = np.hstack([boxes, rng.uniform(0.3, 1.0, (count, 1)), targets[i, :count, 4:]])
    return detections, targets


def test_the_bootstrap_interval_is_zero_for_one_model_and_narrows_with_more_images():
    reference, targets = _detector(200, seed=1)
    assert detection_map_drop_interval(reference, reference, targets) == 0.0
    degraded = reference.copy()
    degraded[::3, 0, :4] += 100  # a third of the images lose an object to a false positive
    drop = 100 * (detection_map(reference, targets)["map50"] - detection_map(degraded, targets)["map50"])
    interval = detection_map_drop_interval(reference, degraded, targets)
    assert 0.0 < interval < drop < 50.0  # the drop is real: its 95 % interval keeps clear of 0
    assert detection_map_drop_interval(reference, degraded, targets) == interval  # seeded
    assert detection_map_drop_interval(reference, degraded, targets, seed=1) != interval
    more_reference, more_targets = _detector(1600, seed=2)
    more_degraded = more_reference.copy()
    more_degraded[::3, 0, :4] += 100
    assert detection_map_drop_interval(more_reference, more_degraded, more_targets) < interval / 2


def test_box_agreement():
    detections, _ = _detector(20, seed=3)
    assert box_agreement(detections, detections) == 1.0
    shifted = detections.copy()
    shifted[..., [0, 2]] += (detections[..., 2:3] - detections[..., 0:1]) * 0.7  # IoU 0.3 / 1.7 < 0.5
    assert box_agreement(shifted, detections) == 0.0
    swapped = detections.copy()
    swapped[..., 5] = np.where(detections[..., 5] >= 0, (detections[..., 5] + 1) % 3, -1)
    assert box_agreement(swapped, detections) == 0.0
    empty = np.full((2, 3, 6), -1.0, np.float32)
    assert box_agreement(empty, empty) == 1.0
    one = _boxes([0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 0], [40, 40, 50, 50, 0.1, 0])  # the last: not shown
    assert box_agreement(one, one[:, :1]) == pytest.approx(2 * 1 / (2 + 1))
