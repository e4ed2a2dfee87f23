"""mnist-canvas: a built-in object-detection set made from the 5,000 shipped MNIST digits (no download).

Each canvas (default 96x96, one channel, black) holds 1-4 digits at random scales (the longer side of a digit's ink
16-40 px), pasted by max-blending where their boxes overlap little (IoU <= 0.1 and at most 5% of the smaller box),
among clutter that is no digit and never labelled: short thin straight strokes, dots and small blobs at moderate
intensity, clear of the digits' boxes, and mild noise. A box is the ink bounds of its pasted digit (pixels
above INK on the [0, 1] scale; x2, y2 exclusive). The source digits are split into train/val/test pools first, so a
split's canvases show only its own digits: no test digit is seen in training or calibration.

Targets are ``[N, MAX_OBJECTS, 5]`` float32 rows (x1, y1, x2, y2, class) in canvas pixels; padding rows are zero
boxes with class -1.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgepipe.data.base import Dataset, Split, split_three_ways
from edgepipe.data.mnist import MNIST_MEAN, MNIST_STD, _preprocessing, _raw_mnist
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import DatasetConfig

DEFAULT_SIZE = (96, 96)
SIZE_RANGE = (64, 256)
DEFAULT_CANVASES = 5000
MAX_OBJECTS = 4
DIGIT_SIDE = (16, 40)  # the longer side of a pasted digit's ink, in pixels
INK = 0.2  # a pixel at or below this (on the [0, 1] scale) is not ink: box bounds
MAX_IOU = 0.1  # between any two digit boxes on a canvas
MAX_COVER = 0.05  # of the smaller of two digit boxes, at most, inside the other
PATCH = 48  # side of the resampled digit patch (holds the ink of the largest digit plus its blur)
PLACEMENT_TRIES = 32
CLUTTER = 17  # side of a clutter stamp (a stroke of up to 11 px at any angle, or a blob)
SPLIT_NAMES = ("train", "val", "test")


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits, [0, 1] float32 28x28, and their labels (parsed once per process: ~2 s)."""
    images, labels = _raw_mnist()
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _canvas_size(config: DatasetConfig) -> tuple[int, int]:
    height, width = config.image_size or DEFAULT_SIZE
    if not (SIZE_RANGE[0] <= height <= SIZE_RANGE[1] and SIZE_RANGE[0] <= width <= SIZE_RANGE[1]):
        raise EdgepipeError(f"mnist-canvas: image_size {[height, width]} is outside {SIZE_RANGE[0]}..{SIZE_RANGE[1]} "
                            "pixels per side")
    return int(height), int(width)


def _canvas_counts(config: DatasetConfig) -> tuple[int, int, int]:
    total = config.canvases or DEFAULT_CANVASES
    test = max(1, round(total * config.test_fraction))
    val = max(1, round(total * config.val_fraction))
    if total - test - val < 1:
        raise EdgepipeError(f"mnist-canvas: {total} canvases cannot be split train/val/test; ask for at least 10")
    return total - test - val, val, test


def _ink_bounds(ink: np.ndarray) -> np.ndarray:
    """[N, H, W] bool -> [N, 4] int (x1, y1, x2, y2), x2/y2 exclusive. Every image must hold some ink."""
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    y1, y2 = rows.argmax(axis=1), rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    x1, x2 = cols.argmax(axis=1), cols.shape[1] - cols[:, ::-1].argmax(axis=1)
    return np.stack([x1, y1, x2, y2], axis=1)


def _resample(images: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Scale each digit so the longer side of its ink spans ``sides`` pixels, centred in a PATCH x PATCH patch.

    A bilinear ``grid_sample`` over many digits at once (the scale factor is >= 0.8, so no antialiasing is needed)."""
    import torch
    import torch.nn.functional as F

    bounds = _ink_bounds(images > INK).astype(np.float64)
    extent = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    scale = sides / extent  # output pixels per source pixel
    centre_x = (bounds[:, 0] + bounds[:, 2] - 1) / 2  # in source pixel indices
    centre_y = (bounds[:, 1] + bounds[:, 3] - 1) / 2
    offsets = np.arange(PATCH) - (PATCH - 1) / 2
    source_x = centre_x[:, None] + offsets[None, :] / scale[:, None]  # [N, PATCH]
    source_y = centre_y[:, None] + offsets[None, :] / scale[:, None]
    side = images.shape[-1]
    grid_x = ((2 * source_x + 1) / side - 1).astype(np.float32)  # grid_sample's [-1, 1] (align_corners=False)
    grid_y = ((2 * source_y + 1) / side - 1).astype(np.float32)
    patches = np.empty((len(images), PATCH, PATCH), np.float32)
    for start in range(0, len(images), 1024):  # chunks: the sampling grid of all digits at once is ~0.3 GB
        part = slice(start, start + 1024)
        count = len(grid_x[part])
        grid = torch.from_numpy(np.stack(np.broadcast_arrays(grid_x[part, None, :], grid_y[part, :, None]), axis=-1))
        digits = torch.from_numpy(np.ascontiguousarray(images[part, None], dtype=np.float32))
        sampled = F.grid_sample(digits, grid.reshape(count, PATCH, PATCH, 2), mode="bilinear", padding_mode="zeros",
                                align_corners=False)
        patches[part] = sampled[:, 0].numpy()
    return patches


def _crowded(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Whether boxes [..., C, 4] sit too close to boxes [..., P, 4] for both digits to stay readable -> [..., C, P]:
    IoU above MAX_IOU, or more than MAX_COVER of the smaller box shared (a small digit beside a large one)."""
    a, b = boxes[..., :, None, :], others[..., None, :, :]
    inter = (np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
             * np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None))
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return (inter > MAX_IOU * (area_a + area_b - inter)) | (inter > MAX_COVER * np.minimum(area_a, area_b))


def _place(patch_boxes: np.ndarray, first: np.ndarray, wanted: np.ndarray, size: tuple[int, int],
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Where each canvas's digits go, one slot at a time for all canvases: the first of PLACEMENT_TRIES random
    positions whose box lies inside the canvas and is not _crowded by the digits already there (none: the digit
    is dropped). Returns the boxes [N, MAX_OBJECTS, 4] (placed digits first) and their objects' indices (-1: none)."""
    height, width = size
    count = len(wanted)
    boxes = np.zeros((count, MAX_OBJECTS, 4), np.int64)
    chosen = np.full((count, MAX_OBJECTS), -1, np.int64)
    placed = np.zeros(count, np.int64)
    for slot in range(MAX_OBJECTS):
        canvases = np.flatnonzero(wanted > slot)
        objects = first[canvases] + slot
        box_w = patch_boxes[objects, 2] - patch_boxes[objects, 0]
        box_h = patch_boxes[objects, 3] - patch_boxes[objects, 1]
        lefts = (rng.random((len(canvases), PLACEMENT_TRIES)) * (width - box_w + 1)[:, None]).astype(np.int64)
        tops = (rng.random((len(canvases), PLACEMENT_TRIES)) * (height - box_h + 1)[:, None]).astype(np.int64)
        candidates = np.stack([lefts, tops, lefts + box_w[:, None], tops + box_h[:, None]], axis=-1)
        if slot == 0:
            fits = np.ones(lefts.shape, bool)
        else:
            there = np.arange(slot)[None, :] < placed[canvases, None]  # [C, slot]
            overlap = _crowded(candidates, boxes[canvases, :slot])  # [C, tries, slot]
            fits = ~(overlap & there[:, None, :]).any(axis=-1)
        ok = fits.any(axis=1)
        canvases, objects, candidates, fits = canvases[ok], objects[ok], candidates[ok], fits[ok]
        rows = placed[canvases]
        boxes[canvases, rows] = candidates[np.arange(len(canvases)), fits.argmax(axis=1)]
        chosen[canvases, rows] = objects
        placed[canvases] += 1
    return boxes, chosen


def _clutter_patches(kinds: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clutter stamps [M, CLUTTER, CLUTTER] for ``kinds`` (True: a short thin straight stroke; False: a dot or small
    blob), at moderate intensity, and each one's half extent (x, y) around the stamp's centre, [M, 2]."""
    count = len(kinds)
    centre = (CLUTTER - 1) / 2
    ys, xs = np.mgrid[0:CLUTTER, 0:CLUTTER].astype(np.float32)
    xs, ys = xs[None] - centre, ys[None] - centre
    intensity = rng.uniform(0.25, 0.6, size=(count, 1, 1)).astype(np.float32)
    # strokes: a segment of 4-11 px through the centre, any angle, core half-width 0.3-0.7 px, soft 1 px edge
    length = rng.uniform(4, 11, size=(count, 1, 1))
    angle = rng.uniform(0, np.pi, size=(count, 1, 1))
    dx, dy = length * np.cos(angle), length * np.sin(angle)
    half_width = rng.uniform(0.3, 0.7, size=(count, 1, 1))
    t = np.clip((xs * dx + ys * dy) / (length * length) + 0.5, 0, 1)
    distance = np.hypot(xs - (t - 0.5) * dx, ys - (t - 0.5) * dy)
    stroke = np.clip(1.0 - (distance - half_width), 0, 1)
    # blobs: a Gaussian of sigma 0.6-1.8 px, a little off centre
    sigma = rng.uniform(0.6, 1.8, size=(count, 1, 1))
    shift = rng.uniform(-0.5, 0.5, size=(count, 2, 1, 1))
    blob = np.exp(-((xs - shift[:, 0]) ** 2 + (ys - shift[:, 1]) ** 2) / (2 * sigma * sigma))
    patches = (intensity * np.where(kinds[:, None, None], stroke, blob)).astype(np.float32)
    half = np.where(kinds[:, None], np.concatenate([np.abs(dx[:, :, 0]), np.abs(dy[:, :, 0])], axis=1) / 2 + 2,
                    3 * sigma[:, :, 0] + 0.5)
    return patches, half


def _place_clutter(owners: np.ndarray, half: np.ndarray, boxes: np.ndarray, valid: np.ndarray,
                   size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A top-left corner for each clutter stamp whose footprint stays clear of its canvas's digit boxes (grown by
    2 px), the first of PLACEMENT_TRIES random positions; ``ok`` False where none was clear (the stamp is dropped)."""
    height, width = size
    tries = PLACEMENT_TRIES
    lefts = rng.integers(0, width - CLUTTER + 1, size=(len(owners), tries))
    tops = rng.integers(0, height - CLUTTER + 1, size=(len(owners), tries))
    centre = (CLUTTER - 1) / 2
    x1, x2 = lefts + centre - half[:, 0:1], lefts + centre + half[:, 0:1]
    y1, y2 = tops + centre - half[:, 1:2], tops + centre + half[:, 1:2]
    keep_out = boxes[owners][:, None, :, :] + np.array([-2, -2, 2, 2])  # [M, 1, MAX_OBJECTS, 4]
    hits = ((x1[..., None] < keep_out[..., 2]) & (keep_out[..., 0] < x2[..., None])
            & (y1[..., None] < keep_out[..., 3]) & (keep_out[..., 1] < y2[..., None]) & valid[owners][:, None, :])
    clear = ~hits.any(axis=-1)
    pick = clear.argmax(axis=1)
    rows = np.arange(len(owners))
    return np.stack([tops[rows, pick], lefts[rows, pick]], axis=1), clear.any(axis=1)


def _render(pool: np.ndarray, count: int, size: tuple[int, int], rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` canvases from the digits in ``pool``: images [N, 1, H, W] on [0, 1], targets [N, MAX_OBJECTS, 5], and
    the source index of every object ([N, MAX_OBJECTS], -1 where none)."""
    images, labels = _digits()
    height, width = size
    wanted = rng.integers(1, MAX_OBJECTS + 1, size=count)
    first = np.concatenate([[0], np.cumsum(wanted)[:-1]])
    total = int(wanted.sum())
    # every pool digit once before any repeats: classes stay as balanced as the (stratified) pool
    order = np.concatenate([rng.permutation(pool) for _ in range(-(-total // len(pool)))])[:total]
    sides = rng.integers(DIGIT_SIDE[0], DIGIT_SIDE[1] + 1, size=total)
    gains = rng.uniform(0.85, 1.0, size=total).astype(np.float32)
    patches = _resample(images[order], sides.astype(np.float64)) * gains[:, None, None]
    patch_boxes = _ink_bounds(patches > INK)
    boxes, chosen = _place(patch_boxes, first, wanted, size, rng)
    valid = chosen >= 0

    strokes, blobs = rng.integers(1, 4, size=count), rng.integers(1, 5, size=count)
    owners = np.repeat(np.arange(count), strokes + blobs)
    rank = np.arange(len(owners)) - np.repeat(np.cumsum(strokes + blobs) - (strokes + blobs), strokes + blobs)
    kinds = rank < strokes[owners]  # each canvas's strokes first, then its blobs
    clutter, half = _clutter_patches(kinds, rng)
    corners, keep = _place_clutter(owners, half, boxes, valid, size, rng)

    canvases = np.zeros((count, 1, height, width), np.float32)
    canvas_of, slot_of = np.nonzero(valid)
    objects = chosen[canvas_of, slot_of]
    tops = boxes[canvas_of, slot_of, 1] - patch_boxes[objects, 1]
    lefts = boxes[canvas_of, slot_of, 0] - patch_boxes[objects, 0]
    # a digit patch may reach past the canvas edge (its faint rim only: the ink box is inside): crop it there
    y0, x0 = np.maximum(tops, 0), np.maximum(lefts, 0)
    y1, x1 = np.minimum(tops + PATCH, height), np.minimum(lefts + PATCH, width)
    for n, k, *cut in zip(*(a.tolist() for a in (canvas_of, objects, y0, y1, x0, x1, tops, lefts)), strict=True):
        window = canvases[n, 0, cut[0]:cut[1], cut[2]:cut[3]]
        py, px = cut[0] - cut[4], cut[2] - cut[5]
        np.maximum(window, patches[k, py:py + cut[1] - cut[0], px:px + cut[3] - cut[2]], out=window)
    stamps = np.flatnonzero(keep)  # clutter stamps lie wholly inside the canvas
    for n, m, top, left in zip(*(a.tolist() for a in (owners[stamps], stamps, *corners[stamps].T)), strict=True):
        window = canvases[n, 0, top:top + CLUTTER, left:left + CLUTTER]
        np.maximum(window, clutter[m], out=window)
    noise = rng.uniform(0.02, 0.05, size=count).astype(np.float32)
    for start in range(0, count, 256):  # mild Gaussian noise, a chunk at a time (no full-size temporaries)
        chunk = canvases[start:start + 256]
        chunk += noise[start:start + 256, None, None, None] * rng.standard_normal(chunk.shape, dtype=np.float32)
        np.clip(chunk, 0.0, 1.0, out=chunk)

    targets = np.zeros((count, MAX_OBJECTS, 5), np.float32)
    targets[..., :4] = np.where(valid[..., None], boxes, 0)
    sources = np.where(valid, order[np.maximum(chosen, 0)], -1)
    targets[..., 4] = np.where(valid, labels[np.maximum(sources, 0)], -1)
    return canvases, targets, sources


def _build(config: DatasetConfig) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    size = _canvas_size(config)
    counts = _canvas_counts(config)
    _, labels = _digits()
    pools = split_three_ways(np.arange(len(labels)), np.asarray(labels), seed=config.split_seed,
                             val_fraction=config.val_fraction, test_fraction=config.test_fraction)
    built = {}
    for index, (name, pool, count) in enumerate(zip(SPLIT_NAMES, pools, counts, strict=True)):
        rng = np.random.default_rng([config.split_seed, 0xCA5, index])
        built[name] = _render(np.sort(pool.x), count, size, rng)
    return built


def load_mnist_canvas(config: DatasetConfig) -> Dataset:
    built = _build(config)
    splits = []
    for images, targets, _ in built.values():  # normalized in place, as normalize() would: canvases are large
        images -= np.float32(MNIST_MEAN)
        images /= np.float32(MNIST_STD)
        splits.append(Split(images, targets))
    height, width = _canvas_size(config)
    preprocessing = {**_preprocessing("NCHW"), "size": [height, width], "task": "detection"}
    return Dataset("mnist-canvas", *splits, labels=[str(d) for d in range(10)], preprocessing=preprocessing,
                   layout="arrays")
