"""The device runtime's task scores: what a bundle's outputs mean and how an artifact is judged, in numpy only.

The seam between running a model and scoring its outputs. Python 3.6 syntax with the standard library and numpy
(>= 1.13), shipped in every bundle with the rest of the device package; the workstation imports the same file
(edgepipe.tasks), so the device and the workstation score alike. The detection metrics reproduce pycocotools'
COCO mAP (tests/unit/test_detection_metric.py checks them against it to 1e-4).
"""
import numpy as np

# A detector's graph ends in its decode with these fixed-shape outputs (edgepipe.models.detector)
DETECTION_OUTPUTS = ("boxes", "scores", "classes", "num_detections")
DISPLAY_SCORE = 0.3  # what infer shows and box agreement compares (mAP reads every detection)


def pack_detections(boxes, scores, classes, count):
    """[N, K, 6] rows of x1, y1, x2, y2, score, class: what the detection metrics read. Rows past an image's
    num_detections are emptied (class -1), whatever the runtime left in them."""
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32).reshape(boxes.shape[:2])
    classes = np.asarray(classes, np.float32).reshape(boxes.shape[:2])
    count = np.asarray(count).reshape(len(boxes), -1)[:, 0]
    valid = np.arange(boxes.shape[1])[None, :] < count[:, None]
    packed = np.concatenate([boxes, scores[..., None], classes[..., None]], axis=-1)
    packed[~valid] = 0.0
    packed[..., 5][~valid] = -1.0
    return packed


def model_outputs(outputs):
    """The one array a task scores, from a model's named outputs: a detector's packed detections, else the first
    output (a classifier's logits, an autoencoder's image)."""
    if all(name in outputs for name in DETECTION_OUTPUTS):
        return pack_detections(*[outputs[name] for name in DETECTION_OUTPUTS])
    return np.asarray(next(iter(outputs.values())))


def top1_correct(outputs, labels):
    """Per sample: 1.0 when the arg-max class is the label (the mean is top-1 accuracy)."""
    return (np.asarray(outputs).argmax(1) == np.asarray(labels)).astype(np.float64)


def psnr_db(outputs, targets, std=None):
    """Per sample: PSNR in dB on the raw [0, 1] image scale. Inputs were normalized as (x - mean) / std, so a
    difference of normalized values times std is the raw difference (the mean cancels)."""
    diff = np.asarray(outputs, np.float64) - np.asarray(targets, np.float64)
    if std is not None:
        scale = np.asarray(std, np.float64).ravel()
        if scale.size > 1 and diff.ndim >= 2 and diff.shape[1] == scale.size:  # one std per channel
            diff = diff * scale.reshape((1, -1) + (1,) * (diff.ndim - 2))
        else:
            diff = diff * scale[0]
    mse = (diff ** 2).reshape(len(diff), -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))  # 100 dB: identical, to float precision


# Object detection: COCO's bbox mAP (pycocotools 2.0 COCOeval, area "all", maxDets 100) in numpy. Detections are
# [N, K, 6] rows of x1, y1, x2, y2, score, class, targets [N, M, 5] rows of x1, y1, x2, y2, class (no crowd, no
# ignore regions); rows of class < 0 are padding. pycocotools/cocoeval.py is followed line by line: evaluateImg's
# greedy matching, accumulate's ordering, precision envelope and 101-point sampling, summarize's means.
COCO_IOUS = np.linspace(0.5, 0.95, 10)  # Params.iouThrs
COCO_RECALLS = np.linspace(0.0, 1.0, 101)  # Params.recThrs
COCO_MAX_DETS = 100  # Params.maxDets[-1], per image and class


def box_iou(a, b):
    """IoU of xyxy boxes [..., A, 4] and [..., B, 4] -> [..., A, B] in float64."""
    return _iou(np.asarray(a, np.float64)[..., :, None, :], np.asarray(b, np.float64)[..., None, :, :])


def _iou(a, b):
    """Elementwise IoU of xyxy boxes [..., 4] as pycocotools' bbIou (maskApi.c): intersection w * h, 0 unless both
    are positive, over union = area(b) + area(a) - intersection."""
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    union = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) + (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    return inter / np.maximum(union - inter, np.finfo(np.float64).tiny)  # two empty boxes: 0, not 0 / 0


def _kept_first(rows, keep, key):
    """Each image's kept rows first, by key ascending with ties in row order (pycocotools sorts with mergesort),
    cut to the most any image keeps."""
    order = np.argsort(np.where(keep, key, np.inf), axis=1, kind="mergesort")
    image = np.arange(len(rows))[:, None]
    width = int(keep.sum(axis=1).max()) if keep.size else 0
    return rows[image, order][:, :width], keep[image, order][:, :width]


def _match_images(boxes, classes, truth_boxes, truth_classes, thresholds):
    """COCOeval.evaluateImg's greedy matching, all images at once: rows [N, K] in score order against targets
    [N, M] (class -1: left out). Each detection in turn takes the free target of its class with the highest
    IoU >= threshold, the last of equal ones (pycocotools replaces its pick unless `ious < iou`). -> true positives
    [N, K, T]. Works on the pairs that reach the lowest threshold; step s matches each image's s-th detection."""
    n, k, m = classes.shape + truth_classes.shape[1:]
    thresholds = np.minimum(np.asarray(thresholds, np.float64), 1 - 1e-10)  # pycocotools: min([t, 1-1e-10])
    pairs = [np.zeros(0, np.int64)] * 3 + [np.zeros(0)]
    chunk = max(1, 2 ** 20 // max(1, k * m))  # images per [images, K, M] comparison: small on a 4 GB Nano
    for s in range(0, n, chunk):
        c = classes[s:s + chunk, :, None]
        image, det, truth = np.nonzero((c == truth_classes[s:s + chunk, None, :]) & (c >= 0))
        iou = _iou(boxes[s + image, det], truth_boxes[s + image, truth])
        near = iou >= thresholds.min()
        pairs = [np.concatenate([a, b[near]]) for a, b in zip(pairs, (s + image, det, truth, iou))]
    image, det, truth, iou = pairs  # in image, detection, target order (nonzero's)
    new = np.diff(np.concatenate([[-1], image * k + det])) != 0  # a detection's first pair
    rank = np.arange(new.sum()) - np.searchsorted(image[new], image[new])  # among its image's detections
    step = rank[np.cumsum(new) - 1]
    order = np.argsort(step * n + image, kind="mergesort")  # by step, then image; each detection's pairs in order
    image, det, truth, iou, step = image[order], det[order], truth[order], iou[order], step[order]
    tp = np.zeros((n, k, len(thresholds)), bool)
    taken = np.zeros((n, len(thresholds), m), bool)
    edges = np.searchsorted(step, np.arange(step.max() + 2 if step.size else 1))
    for lo, hi in zip(edges[:-1], edges[1:]):
        starts = np.nonzero(np.diff(np.concatenate([[-1], image[lo:hi]])))[0]  # one detection per image a step
        pair = np.cumsum(np.diff(np.concatenate([[-1], image[lo:hi]])) != 0) - 1  # -> its detection
        free = np.where((iou[lo:hi, None] >= thresholds) & ~taken[image[lo:hi], :, truth[lo:hi]],
                        iou[lo:hi, None], -1.0)  # [pairs, T]
        best = free == np.maximum.reduceat(free, starts, axis=0)[pair]
        pick = np.maximum.reduceat(np.where(best & (free >= 0), np.arange(lo, hi)[:, None], -1), starts, axis=0)
        i, t = np.nonzero(pick >= 0)
        pick = pick[i, t]  # the last of the highest IoUs, as pycocotools
        tp[image[pick], det[pick], t] = True
        taken[image[pick], t, truth[pick]] = True
    return tp


def match_detections(detections, targets, num_classes=None):
    """Everything mAP needs, matched once (a bootstrap then only re-weights images): a dict of per detection
    "images", "classes", "scores" and "tp" [D, 10] (true positive at each COCO IoU threshold), the detections
    sorted by class then as COCOeval.accumulate orders them (score descending, ties in image order), "bounds" (each
    class's slice) and "gt_counts" [N, C]. Classes >= num_classes (default: the largest seen + 1) count as padding."""
    dets, gts = np.asarray(detections, np.float64), np.asarray(targets, np.float64)
    if num_classes is None:
        num_classes = int(np.concatenate([dets[..., 5].ravel(), gts[..., 4].ravel(), [-1.0]]).max()) + 1
    dets, keep = _kept_first(dets, (dets[..., 5] >= 0) & (dets[..., 5] < num_classes), -dets[..., 4])
    gts, truth = _kept_first(gts, (gts[..., 4] >= 0) & (gts[..., 4] < num_classes), np.zeros(gts.shape[:2]))
    classes = np.where(keep, dets[..., 5], -1).astype(np.int64)
    truth_classes = np.where(truth, gts[..., 4], -1).astype(np.int64)
    if classes.shape[1] > COCO_MAX_DETS:  # COCOeval keeps each image's 100 best of a class
        image, pos = np.nonzero(keep)
        key = image * num_classes + classes[image, pos]
        order = np.argsort(key, kind="mergesort")
        over = order[np.arange(len(order)) - np.searchsorted(key[order], key[order]) >= COCO_MAX_DETS]
        classes[image[over], pos[over]] = -1
    tp = _match_images(dets[..., :4], classes, gts[..., :4], truth_classes, COCO_IOUS)
    image, pos = np.nonzero(classes >= 0)
    cls, scores = classes[image, pos], dets[image, pos, 4]
    order = np.lexsort((-scores, cls))  # stable: equal scores stay in image order, as accumulate's mergesort
    truth_image, truth_pos = np.nonzero(truth_classes >= 0)
    size = len(gts) * num_classes
    counts = np.bincount(truth_image * num_classes + truth_classes[truth_image, truth_pos],
                         minlength=max(size, 1))[:size]  # numpy < 1.14 refuses minlength 0
    tp = tp[image, pos][order]
    return {"images": image[order], "classes": cls[order], "scores": scores[order], "tp": tp,
            "hits": [np.nonzero(column)[0] for column in tp.T],  # the true positives' rows, per threshold
            "bounds": np.searchsorted(cls[order], np.arange(num_classes + 1)),
            "gt_counts": counts.reshape(len(gts), num_classes)}


def _before(cumulative, starts):
    """Each start's running total just before it (0 at the start of the array)."""
    return np.where(starts > 0, np.append(cumulative, 0)[starts - 1], 0)


def average_precisions(matches, image_weights=None, iou_indices=None):
    """{"ap", "recall"}: [C, T] per class and IoU threshold from match_detections' matches, as COCOeval.accumulate
    computes them; nan for a class without ground truth (pycocotools' -1). image_weights: an integer count per
    image (a bootstrap resample): an image counted w times counts its detections and ground truth w times, 0 drops
    it. iou_indices: which of COCO_IOUS (default all)."""
    counts, bounds, classes = matches["gt_counts"], matches["bounds"], matches["classes"]
    weights = np.ones(len(counts), np.int64) if image_weights is None else np.asarray(image_weights, np.int64)
    columns = list(range(len(COCO_IOUS))) if iou_indices is None else list(iou_indices)
    positives = weights.dot(counts)  # npig, per class
    scored = np.nonzero(positives)[0]
    row_weights = weights[matches["images"]]
    seen = np.cumsum(row_weights)  # detections so far (tp + fp), class after class
    ap = np.full((len(positives), len(columns)), np.nan)
    recall = ap.copy()
    for j, t in enumerate(columns):
        # Precision only rises at a true positive and recall only there reaches a threshold: the envelope (max from
        # the right) and searchsorted's picks can be read at the true positives alone.
        hits = matches["hits"][t]
        cls, edges = classes[hits], np.searchsorted(hits, bounds)
        tps = np.cumsum(row_weights[hits])
        tps = tps - _before(tps, edges)[cls]
        precision = tps / (seen[hits] - _before(seen, bounds)[cls] + np.spacing(1))
        rc = tps / np.maximum(positives, 1)[cls]
        # Complex numbers order as (real, imaginary) pairs, here (class, value): one envelope and one searchsorted
        # serve every class, and the values are compared exactly.
        envelope = np.maximum.accumulate((-cls + 1j * precision)[::-1])[::-1].imag
        queries = (scored[:, None] + 1j * COCO_RECALLS[None, :]).ravel()
        picks = np.searchsorted(cls + 1j * rc, queries, side="left").reshape(len(scored), len(COCO_RECALLS))
        inside = picks < edges[scored + 1][:, None]  # else past the last recall reached: precision 0
        ap[scored, j] = np.where(inside, np.append(envelope, 0.0)[picks], 0.0).mean(axis=1)
        found = edges[scored + 1] > edges[scored]
        recall[scored, j] = np.where(found, np.append(tps, 0)[edges[scored + 1] - 1], 0) / positives[scored]
    return {"ap": ap, "recall": recall}


def _class_mean(values):
    """summarize's mean over the classes with ground truth; 0.0 when no class has any (pycocotools says -1)."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else 0.0


def detection_map(detections, targets, num_classes=None):
    """COCO's bbox mAP of detections [N, K, 6] against targets [N, M, 5]: "map50", "map75", "map50_95",
    "recall50" and "ar100" (COCO's AR@100: recall averaged over the 10 IoU thresholds), means over the classes with
    ground truth (0.0 when none has any), and "per_class_ap50" / "per_class_ap50_95" (None: no ground truth)."""
    result = average_precisions(match_detections(detections, targets, num_classes))
    ap, recall = result["ap"], result["recall"]
    return {"map50": _class_mean(ap[:, 0]), "map75": _class_mean(ap[:, 5]), "map50_95": _class_mean(ap.mean(1)),
            "recall50": _class_mean(recall[:, 0]), "ar100": _class_mean(recall.mean(1)),
            "per_class_ap50": [None if np.isnan(v) else float(v) for v in ap[:, 0]],
            "per_class_ap50_95": [None if np.isnan(v) else float(v) for v in ap.mean(1)]}


def detection_map_drop_interval(reference, candidate, targets, resamples=200, seed=0):
    """Half-width of a 95 % paired bootstrap interval of 100 * (mAP@0.5(reference) - mAP@0.5(candidate)): images
    are resampled (the same ones for both models each round), the matching is done once and re-weighted."""
    if not len(targets):
        return 0.0
    ours, theirs = match_detections(reference, targets), match_detections(candidate, targets)
    rng = np.random.RandomState(seed)
    drops = []
    for _ in range(resamples):
        weights = np.bincount(rng.randint(0, len(targets), len(targets)), minlength=len(targets))
        drops.append(100.0 * (_class_mean(average_precisions(ours, weights, [0])["ap"][:, 0])
                              - _class_mean(average_precisions(theirs, weights, [0])["ap"][:, 0])))
    low, high = np.percentile(drops, [2.5, 97.5])
    return float(high - low) / 2.0


def box_agreement(detections, reference, min_score=DISPLAY_SCORE, iou=0.5):
    """Do two detectors find the same boxes? Each image's confident rows (score >= min_score, class >= 0) are
    matched as COCO matches (same class, IoU >= iou, detections highest score first, each reference row once);
    returns the F1 2 * matched / (confident detections + confident reference rows), 1.0 when neither has any."""
    def confident(rows):
        rows = np.asarray(rows, np.float64)
        rows, keep = _kept_first(rows, (rows[..., 5] >= 0) & (rows[..., 4] >= min_score), -rows[..., 4])
        return rows, np.where(keep, rows[..., 5], -1).astype(np.int64)
    dets, classes = confident(detections)
    refs, ref_classes = confident(reference)
    total = int((classes >= 0).sum() + (ref_classes >= 0).sum())
    if not total:
        return 1.0
    matched = _match_images(dets[..., :4], classes, refs[..., :4], ref_classes, [iou]).sum()
    return 2.0 * matched / total


class TaskScore(object):
    """One task's per-sample score (mean = the metric), how many budget units one unit of it is, and agreement.

    name, metric: the task and its primary metric's key; unit: what drops and budgets are in; per_unit: budget units
    per unit of the metric (a fraction of correct samples is 100 points)."""

    name, metric, unit, per_unit = "", "", "pts", 100.0

    def per_sample(self, outputs, targets):
        raise NotImplementedError

    def agreement(self, outputs, reference):
        raise NotImplementedError

    def targets(self, x, y):
        """The targets scores are computed against: the labels as stored, or the inputs themselves."""
        raise NotImplementedError

    def score(self, outputs, targets):
        return float(self.per_sample(outputs, targets).mean())

    def drop(self, reference, value):
        return (reference - value) * self.per_unit


class ClassificationScore(TaskScore):
    name, metric = "classification", "accuracy"

    def per_sample(self, outputs, targets):
        return top1_correct(outputs, targets)

    def agreement(self, outputs, reference):
        return float((outputs.argmax(1) == reference.argmax(1)).mean())

    def targets(self, x, y):
        return None if y is None else np.asarray(y, np.int64)


class ReconstructionScore(TaskScore):
    name, metric, unit, per_unit = "reconstruction", "psnr_db", "dB", 1.0

    def __init__(self, std=None):
        self.std = std  # PSNR is on the de-normalized pixels

    def per_sample(self, outputs, targets):
        return psnr_db(outputs, targets, self.std)

    def agreement(self, outputs, reference):
        return float(psnr_db(outputs, reference, self.std).mean())

    def targets(self, x, y):
        return x


class DetectionScore(TaskScore):
    """mAP@0.5 over the whole set (no mean of per-image scores: the drop's interval is a bootstrap)."""

    name, metric = "detection", "map50"

    def agreement(self, outputs, reference):
        return box_agreement(outputs, reference)

    def targets(self, x, y):
        return None if y is None else np.asarray(y, np.float32)

    def score(self, outputs, targets):
        return float(detection_map(outputs, targets)["map50"])


TASK_SCORES = {"classification": lambda std=None: ClassificationScore(), "reconstruction": ReconstructionScore,
               "detection": lambda std=None: DetectionScore()}
