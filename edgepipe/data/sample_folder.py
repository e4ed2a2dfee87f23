"""A generated folder of photos-like files to try the imagefolder recipes on without data of one's own.

Each image is one shape (the class) in a random colour, size, position and rotation on a textured gradient
background with distractor blobs; files are what users' folders hold: mostly JPEG at varied quality, some PNG,
a few grayscale and RGBA files, and mixed, non-square sizes. Drawn with PIL from a seed: nothing is downloaded.

    python -m edgepipe.data.sample_folder data/shapes --images 1000
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")  # the default classes
OTHER_SHAPES = ("ring", "diamond", "star", "bars")  # a second, disjoint task (transfer from SHAPES to these)
# More classes, disjoint from both tasks above: a backbone "pretrained" on many classes learns general shape
# features, as an ImageNet backbone does, instead of the four discriminants a 4-class task needs.
PRETRAIN_SHAPES = ("pentagon", "hexagon", "semicircle", "ellipse", "ell", "arrow", "crescent", "hourglass")
ALL_SHAPES = SHAPES + OTHER_SHAPES + PRETRAIN_SHAPES


def _polygon(center, radius, sides, angle, inner=None):
    points = []
    count = sides * (2 if inner else 1)
    for k in range(count):
        r = radius if not inner or k % 2 == 0 else radius * inner
        theta = angle + 2 * math.pi * k / count
        points.append((center[0] + r * math.cos(theta), center[1] + r * math.sin(theta)))
    return points


def _bar(cx: float, cy: float, angle: float, half_length: float, half_width: float) -> list[tuple[float, float]]:
    """The corners of a rectangle centred on (cx, cy), its long side along ``angle``."""
    dx, dy = math.cos(angle), math.sin(angle)
    px, py = -dy * half_width, dx * half_width
    ends = ((cx - dx * half_length, cy - dy * half_length), (cx + dx * half_length, cy + dy * half_length))
    return [(ends[0][0] + px, ends[0][1] + py), (ends[1][0] + px, ends[1][1] + py),
            (ends[1][0] - px, ends[1][1] - py), (ends[0][0] - px, ends[0][1] - py)]


def _draw_shape(draw, shape: str, pose: tuple[tuple[float, float], float, float], colour, background) -> None:
    """``shape`` at ``pose`` (its centre, radius and angle in radians)."""
    center, radius, angle = pose
    cx, cy = center
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    elif shape == "ring":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
        inner = radius * 0.55
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=background)
    elif shape == "square":
        draw.polygon(_polygon(center, radius, 4, angle + math.pi / 4), fill=colour)
    elif shape == "diamond":  # a rhombus: long along `angle`, 0.55 of that across
        dx, dy = math.cos(angle), math.sin(angle)
        draw.polygon([(cx + dx * radius, cy + dy * radius), (cx - dy * radius * 0.55, cy + dx * radius * 0.55),
                      (cx - dx * radius, cy - dy * radius), (cx + dy * radius * 0.55, cy - dx * radius * 0.55)],
                     fill=colour)
    elif shape == "triangle":
        draw.polygon(_polygon(center, radius, 3, angle), fill=colour)
    elif shape == "star":
        draw.polygon(_polygon(center, radius, 5, angle, inner=0.42), fill=colour)
    elif shape == "cross":
        for turn in (0.0, math.pi / 2):
            draw.polygon(_bar(cx, cy, angle + turn, radius, radius * 0.38), fill=colour)
    elif shape == "bars":
        for offset in (-0.6, 0.0, 0.6):
            shift_x, shift_y = -math.sin(angle) * radius * offset, math.cos(angle) * radius * offset
            draw.polygon(_bar(cx + shift_x, cy + shift_y, angle, radius, radius * 0.16), fill=colour)
    elif shape in ("pentagon", "hexagon"):
        draw.polygon(_polygon(center, radius, 5 if shape == "pentagon" else 6, angle), fill=colour)
    elif shape == "semicircle":
        start = math.degrees(angle)
        draw.pieslice([cx - radius, cy - radius, cx + radius, cy + radius], start, start + 180, fill=colour)
    elif shape == "ellipse":  # axis-aligned: PIL draws no rotated ellipse, so it stays a distinct class
        draw.ellipse([cx - radius, cy - radius * 0.5, cx + radius, cy + radius * 0.5], fill=colour)
    elif shape == "ell":
        dx, dy = math.cos(angle) * radius * 0.7, math.sin(angle) * radius * 0.7
        draw.polygon(_bar(cx - dy, cy + dx, angle, radius, radius * 0.22), fill=colour)  # the foot
        draw.polygon(_bar(cx - dx, cy - dy, angle + math.pi / 2, radius, radius * 0.22), fill=colour)  # the upright
    elif shape == "arrow":
        dx, dy = math.cos(angle), math.sin(angle)
        draw.polygon(_bar(cx - dx * radius * 0.3, cy - dy * radius * 0.3, angle, radius * 0.7, radius * 0.18),
                     fill=colour)
        tip = (cx + dx * radius, cy + dy * radius)
        draw.polygon([tip, (cx + dx * radius * 0.2 - dy * radius * 0.55, cy + dy * radius * 0.2 + dx * radius * 0.55),
                      (cx + dx * radius * 0.2 + dy * radius * 0.55, cy + dy * radius * 0.2 - dx * radius * 0.55)],
                     fill=colour)
    elif shape == "crescent":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
        shift_x, shift_y = math.cos(angle) * radius * 0.45, math.sin(angle) * radius * 0.45
        draw.ellipse([cx + shift_x - radius * 0.85, cy + shift_y - radius * 0.85, cx + shift_x + radius * 0.85,
                      cy + shift_y + radius * 0.85], fill=background)
    elif shape == "hourglass":
        dx, dy = math.cos(angle) * radius, math.sin(angle) * radius
        px, py = -math.sin(angle) * radius * 0.7, math.cos(angle) * radius * 0.7
        draw.polygon([(cx - dx + px, cy - dy + py), (cx - dx - px, cy - dy - py), (cx + dx + px, cy + dy + py),
                      (cx + dx - px, cy + dy - py)], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(ALL_SHAPES)}")


def draw_image(shape: str, width: int, height: int, rng: np.random.Generator):
    """One RGB PIL image of ``shape`` on a noisy gradient, with a few distractor blobs."""
    from PIL import Image, ImageDraw

    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    pixels = top * (1 - ramp) + bottom * ramp + rng.normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.broadcast_to(pixels, (height, width, 3)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    for _ in range(int(rng.integers(0, 3))):  # small blobs: a model must find the shape, not any edge
        x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.02, 0.06) * side
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    radius = rng.uniform(0.26, 0.42) * side
    center = (rng.uniform(radius, width - radius), rng.uniform(radius, height - radius))
    background = tuple(int(v) for v in (top + bottom) // 2)
    colour = tuple(int(v) for v in (np.asarray(background) + rng.choice([-1, 1], 3) * rng.integers(90, 160, 3)) % 256)
    _draw_shape(draw, shape, (center, radius, rng.uniform(0, 2 * math.pi)), colour, background)
    return image


def _save(image, path_stem: Path, rng: np.random.Generator) -> Path:
    """Mostly JPEG, some PNG; a few grayscale and RGBA files, as real folders have."""
    kind = rng.uniform()
    if kind < 0.05:
        path = path_stem.with_suffix(".jpg")
        image.convert("L").save(path, quality=int(rng.integers(70, 95)))
    elif kind < 0.10:
        path = path_stem.with_suffix(".png")
        rgba = image.convert("RGBA")
        rgba.putalpha(int(rng.integers(160, 256)))
        rgba.save(path)
    elif kind < 0.35:
        path = path_stem.with_suffix(".png")
        image.save(path)
    else:
        path = path_stem.with_suffix(".jpg")
        image.save(path, quality=int(rng.integers(70, 96)))
    return path


def write_sample_folder(root: Path, *, images: int = 1000, classes: tuple[str, ...] = SHAPES,
                        sizes: tuple[int, int] = (64, 96), seed: int = 0, splits: bool = False) -> Path:
    """Write ``images`` files into ``root/<class>/`` (or ``root/{train,val,test}/<class>/`` with ``splits``).

    ``sizes`` bounds each side in pixels, drawn independently (mixed, non-square images).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for index in range(images):
        shape = classes[index % len(classes)]
        folder = root / shape
        if splits:
            draw = rng.uniform()
            folder = root / ("test" if draw < 0.2 else "val" if draw < 0.3 else "train") / shape
        folder.mkdir(parents=True, exist_ok=True)
        width, height = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
        _save(draw_image(shape, width, height, rng), folder / f"{shape}-{index:05d}", rng)
    return root


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--min-side", type=int, default=64)
    parser.add_argument("--max-side", type=int, default=96)
    parser.add_argument("--classes", default=",".join(SHAPES), help=f"of {', '.join(ALL_SHAPES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--splits", action="store_true", help="train/ val/ test/ folders instead of one pool")
    args = parser.parse_args(argv)
    classes = tuple(name.strip() for name in args.classes.split(",") if name.strip())
    unknown = sorted(set(classes) - set(ALL_SHAPES))
    if unknown or len(classes) < 2:
        parser.error(f"--classes: need 2+ of {', '.join(ALL_SHAPES)} (unknown: {', '.join(unknown) or 'none'})")
    if not 8 <= args.min_side <= args.max_side:
        parser.error("--min-side/--max-side: need 8 <= min <= max")
    write_sample_folder(args.out, images=args.images, classes=classes, sizes=(args.min_side, args.max_side),
                        seed=args.seed, splits=args.splits)
    print(f"wrote {args.images} images of {', '.join(classes)} to {args.out}")


if __name__ == "__main__":
    main()
