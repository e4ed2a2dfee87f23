"""User detection data in the two formats people have, streamed from its image files: COCO and YOLO.

COCO (``dataset.name: coco``): a folder with ``instances.json`` (or ``dataset.annotations``), split by seed, or with
``instances_train.json`` / ``instances_val.json`` / ``instances_test.json`` taken as given. Images are found by
``file_name`` in the folder or its ``images/`` sub-folder. Categories become class indices in category-id order;
crowd annotations are dropped (counted in the preprocessing record); images without annotations are negatives.

YOLO (``dataset.name: yolo``): ``images/`` and ``labels/`` (same stem, ``class cx cy w h`` per line, normalized),
names from ``data.yaml``. Split folders are taken as given: ultralytics' ``images/train|val|test`` or Roboflow's
``train|valid|test/images``; a flat ``images/`` is split by seed. A missing label file means no objects.

Targets are what :mod:`edgepipe.data.canvas` gives: ``[N, M, 5]`` float32 rows (x1, y1, x2, y2, class) in model-input
pixels, after the eval view's plain resize to ``image_size`` (a centre crop would cut boxes), padding ``[0,0,0,0,-1]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.data.base import Dataset
from edgepipe.data.files import FileSplit
from edgepipe.data.imagefolder import _statistics
from edgepipe.data.images import IMAGE_SUFFIXES, EvalView, open_image, view_record
from edgepipe.data.paths import inside_dataset
from edgepipe.errors import EdgepipeError, first_line
from edgepipe.recipe import DatasetConfig

SPLITS = ("train", "val", "test")
DEFAULT_SIZE = (320, 320)  # multiples of 16, as the centernet detector needs
MIN_IMAGES = 10
EDGE_SLACK = 1.0  # source pixels a box may reach past the image edge (tools round outwards): clipped, not refused


@dataclass
class _Image:
    file: Path
    size: tuple[int, int]  # (width, height) of the file, from its header
    boxes: list[tuple[float, float, float, float, int]] = field(default_factory=list)  # source pixels, class


class DetectionFileSplit(FileSplit):
    """A FileSplit whose ``y`` is box targets [N, M, 5]; the eval view is also the training view (no augmentation:
    it would move objects away from their boxes)."""

    def __init__(self, root: Path, files: list[Path], y: np.ndarray, preprocessing: dict[str, Any], *,
                 workers: int = 0) -> None:
        super().__init__(root, files, np.zeros(len(files), np.int64), preprocessing, workers=workers)
        self.y = np.asarray(y, np.float32)

    def update_fingerprint(self, digest) -> None:
        """Each file's relative path and size, and its boxes: a changed label is a changed split."""
        for file, rows in zip(self.files, self.y, strict=True):
            name = file.relative_to(self.root).as_posix() if file.is_relative_to(self.root) else file.as_posix()
            digest.update(f"{name}\0{file.stat().st_size}\0".encode())
            digest.update(np.ascontiguousarray(rows).tobytes())


def _header_size(file: Path) -> tuple[int, int]:
    """Open the file's header (no pixels): a non-image fails here, with its name, before training starts."""
    with open_image(file) as image:
        return image.size


def _source_box(x1: float, y1: float, x2: float, y2: float, size: tuple[int, int], where: str
                ) -> tuple[float, float, float, float]:
    """A box in source pixels, checked (positive width and height, inside the image) and clipped to it."""
    width, height = size
    if not x2 - x1 > 0:  # `not >` also catches NaN
        raise EdgepipeError(f"{where}: box width {x2 - x1:g} is not positive")
    if not y2 - y1 > 0:
        raise EdgepipeError(f"{where}: box height {y2 - y1:g} is not positive")
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    outside = min(x1, y1) < -EDGE_SLACK or x2 > width + EDGE_SLACK or y2 > height + EDGE_SLACK
    if outside or clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        corners = ", ".join(f"{v:g}" for v in (x1, y1, x2, y2))
        raise EdgepipeError(f"{where}: box (x1, y1, x2, y2) = ({corners}) is outside the {width}x{height} image")
    return clipped


# --- COCO ---------------------------------------------------------------------------------------------------------


def _read_coco(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgepipeError(f"{file}: not readable JSON ({first_line(exc)})") from None
    except RecursionError:
        raise EdgepipeError(f"{file}: nests too deeply to be COCO annotations") from None
    if not isinstance(data, dict):
        raise EdgepipeError(f"{file}: not COCO instances (the JSON is a {type(data).__name__}, not an object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise EdgepipeError(f"{file}: not COCO instances (no '{key}' list)")
    return data


def _coco_files(root: Path, config: DatasetConfig) -> dict[str, Path]:
    """{"all": one JSON} (split by seed) or {"train": ..., "val"/"test": ...} (taken as given)."""
    if config.annotations:
        file = root / config.annotations
        if not file.is_file():
            raise EdgepipeError(f"dataset.annotations {file} is not a file")
        return {"all": file}
    given = {name: root / f"instances_{name}.json" for name in SPLITS if (root / f"instances_{name}.json").is_file()}
    if given:
        if "train" not in given:
            raise EdgepipeError(f"{root}: has {', '.join(p.name for p in given.values())} but no instances_train.json")
        return given
    if not (root / "instances.json").is_file():
        raise EdgepipeError(f"{root}: no instances.json (COCO annotations); put it there or name the JSON file with "
                            "dataset.annotations")
    return {"all": root / "instances.json"}


def _coco_classes(data: dict[str, dict]) -> tuple[dict[int, int], list[str]]:
    """Category id → contiguous class index (in id order), and the names, agreed across the files."""
    names: dict[int, str] = {}
    for name, coco in data.items():
        for category in coco["categories"]:
            if not isinstance(category, dict) or type(category.get("id")) is not int:
                raise EdgepipeError(f"{name}: category {str(category)[:80]} has no integer id")
            label = str(category.get("name", category["id"]))
            if names.setdefault(category["id"], label) != label:
                raise EdgepipeError(f"{name}: category {category['id']} is named {label!r} here and "
                                    f"{names[category['id']]!r} in another annotations file")
    if not names:
        raise EdgepipeError(f"{', '.join(data)}: no categories")
    ids = sorted(names)
    return {i: index for index, i in enumerate(ids)}, [names[i] for i in ids]


def _coco_images(file: Path, coco: dict, root: Path, classes: dict[int, int], split: str) -> tuple[list[_Image], int]:
    """The images of one COCO file with their boxes (source pixels), and how many crowd annotations were dropped."""
    folders = [root, root / "images", *([root / split, root / "images" / split] if split in SPLITS else [])]
    images: dict[Any, _Image] = {}
    for entry in coco["images"]:
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            raise EdgepipeError(f"{file}: image entry {str(entry)[:80]} has no id or file_name")
        if entry["id"] in images:
            raise EdgepipeError(f"{file}: image id {entry['id']} is listed twice")
        # every candidate is contained before it is looked at: ten '../' or a symlink out is refused, never stat'ed
        candidates = [inside_dataset(folder / entry["file_name"], root, f"{file}: image {entry['id']}'s file")
                      for folder in folders]
        path = next((candidate for candidate in candidates if candidate.is_file()), None)
        if path is None:
            raise EdgepipeError(f"{file}: image {entry['id']} file {entry['file_name']!r} is not in {root} or "
                                f"{root / 'images'}")
        size = _header_size(path)
        stated = (entry.get("width"), entry.get("height"))
        if None not in stated and tuple(stated) != size:
            raise EdgepipeError(f"{file}: image {entry['id']} ({path.name}) is said to be {stated[0]}x{stated[1]}, "
                                f"the file is {size[0]}x{size[1]}")
        images[entry["id"]] = _Image(path, size)
    crowd = 0
    for position, note in enumerate(coco["annotations"]):
        if not isinstance(note, dict):
            raise EdgepipeError(f"{file}: annotation #{position} is not an object")
        if note.get("iscrowd"):  # a crowd region is no single object: COCO's own evaluation ignores them too
            crowd += 1
            continue
        name = note.get("id", f"#{position}")
        image = images.get(note.get("image_id"))
        if image is None:
            raise EdgepipeError(f"{file}: annotation {name} points to unknown image_id {note.get('image_id')!r}")
        if note.get("category_id") not in classes:
            raise EdgepipeError(f"{file}: annotation {name} points to unknown category_id {note.get('category_id')!r}")
        bbox = note.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)):
            raise EdgepipeError(f"{file}: annotation {name} has bbox {bbox!r}; expected [x, y, width, height]")
        x, y, w, h = (float(v) for v in bbox)
        box = _source_box(x, y, x + w, y + h, image.size, f"{file}: annotation {name} ({image.file.name})")
        image.boxes.append((*box, classes[note["category_id"]]))
    return list(images.values()), crowd


def _load_coco(root: Path, config: DatasetConfig) -> tuple[dict[str, list[_Image]], list[str], dict[str, Any]]:
    files = _coco_files(root, config)
    data = {str(file): _read_coco(file) for file in files.values()}
    classes, labels = _coco_classes(data)
    found, crowd = {}, 0
    for split, file in files.items():
        found[split], dropped = _coco_images(file, data[str(file)], root, classes, split)
        crowd += dropped
    return found, labels, {"crowd_dropped": crowd}


# --- YOLO ---------------------------------------------------------------------------------------------------------


def _yolo_folders(root: Path) -> dict[str, tuple[Path, Path]]:
    """{split: (images folder, labels folder)}; "all" for a flat images/ folder (split by seed)."""
    ultralytics = {name: (root / "images" / name, root / "labels" / name) for name in SPLITS
                   if (root / "images" / name).is_dir()}
    if ultralytics:
        return ultralytics
    roboflow = {("val" if name == "valid" else name): (root / name / "images", root / name / "labels")
                for name in ("train", "valid", "val", "test") if (root / name / "images").is_dir()}
    if roboflow:
        return roboflow
    if not (root / "images").is_dir():
        raise EdgepipeError(f"{root}: no images/ folder (YOLO layout: images/ and labels/, the same file stems)")
    return {"all": (root / "images", root / "labels")}


def _yolo_names(root: Path) -> list[str] | None:
    import yaml

    file = root / "data.yaml"
    if not file.is_file():
        return None
    try:
        names = (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("names")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError) as exc:
        raise EdgepipeError(f"{file}: not a YAML mapping ({first_line(exc)})") from None
    if isinstance(names, dict):
        if sorted(str(key) for key in names) != sorted(str(i) for i in range(len(names))):
            raise EdgepipeError(f"{file}: 'names' keys must be the class indices 0..{len(names) - 1}")
        names = [names.get(i, names.get(str(i))) for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise EdgepipeError(f"{file}: 'names' must be a list of class names or an {{index: name}} mapping")
    return [str(name) for name in names]


def _yolo_boxes(label: Path, size: tuple[int, int], names: list[str] | None) -> list:
    width, height = size
    boxes = []
    for number, line in enumerate(label.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts, where = line.split(), f"{label}:{number}"
        if not parts:
            continue
        try:
            cls, values = float(parts[0]), [float(v) for v in parts[1:]]
        except ValueError:
            cls, values = -1.0, []
        if len(parts) != 5 or not cls.is_integer() or cls < 0:
            raise EdgepipeError(f"{where}: expected 'class cx cy w h' (an integer class, 4 numbers), got "
                                f"{line.strip()[:60]!r}")
        if not all(0.0 <= v <= 1.0 for v in values):
            raise EdgepipeError(f"{where}: cx cy w h must be normalized to [0, 1], got {' '.join(parts[1:])}")
        if names is not None and cls >= len(names):
            raise EdgepipeError(f"{where}: class {int(cls)}, but the dataset names {len(names)} classes (data.yaml "
                                "or dataset.names)")
        cx, cy, w, h = values
        box = _source_box((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height,
                          size, where)
        boxes.append((*box, int(cls)))
    return boxes


def _yolo_images(images: Path, labels: Path, names: list[str] | None, root: Path) -> list[_Image]:
    found = []
    for file in sorted(p for p in images.rglob("*") if p.is_file() and not p.name.startswith(".")):
        inside_dataset(file, root, "image")
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            raise EdgepipeError(f"{file}: not an image file (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")
        image = _Image(file, _header_size(file))
        label = inside_dataset(labels / file.relative_to(images).with_suffix(".txt"), root, "label file")
        if label.is_file():
            image.boxes = _yolo_boxes(label, image.size, names)
        found.append(image)
    return found


def _declared_names(root: Path, config: DatasetConfig) -> list[str] | None:
    """The class names: ``dataset.names`` (a model's full class list, where the folder shows only some classes or
    has no data.yaml), else data.yaml's; both given, they must agree in count."""
    from_yaml = _yolo_names(root)
    if config.names is None:
        return from_yaml
    if from_yaml is not None and len(from_yaml) != len(config.names):
        raise EdgepipeError(f"dataset.names lists {len(config.names)} classes, {root / 'data.yaml'} names "
                            f"{len(from_yaml)}; give the model's classes in one place")
    return list(config.names)


def _load_yolo(root: Path, config: DatasetConfig) -> tuple[dict[str, list[_Image]], list[str], dict[str, Any]]:
    names = _declared_names(root, config)
    found = {split: _yolo_images(images, labels, names, root)
             for split, (images, labels) in _yolo_folders(root).items()}
    if names is None:  # no names anywhere: the classes are the indices that occur
        seen = [box[4] for images in found.values() for image in images for box in image.boxes]
        names = [str(i) for i in range(max(seen) + 1)] if seen else []
    return found, names, {}


# --- both ---------------------------------------------------------------------------------------------------------


def _carve(images: list[_Image], fraction: float, seed: int) -> tuple[list[_Image], list[_Image]]:
    """A seeded share of ``images`` (at least one) set apart; both parts keep file order."""
    order = np.random.default_rng(seed).permutation(len(images))
    count = max(1, round(len(images) * fraction))
    carved, kept = set(order[:count].tolist()), sorted(order[count:].tolist())
    return [images[i] for i in kept], [images[i] for i in sorted(carved)]


def _arrange(found: dict[str, list[_Image]], config: DatasetConfig, root: Path) -> dict[str, list[_Image]]:
    """The given splits, the missing ones carved from train (or all three from one set), by ``split_seed``."""
    total = sum(len(images) for images in found.values())
    if total == 0:
        raise EdgepipeError(f"{root}: the dataset has no images")
    if total < MIN_IMAGES:
        raise EdgepipeError(f"{root}: the dataset has only {total} images; need at least {MIN_IMAGES} to split "
                            "train/val/test")
    splits = dict(found)
    if "all" in splits:
        splits["train"], splits["test"] = _carve(splits.pop("all"), config.test_fraction, config.split_seed)
        splits["train"], splits["val"] = _carve(splits["train"], config.val_fraction / (1 - config.test_fraction),
                                                config.split_seed + 1)
    for missing in ("val", "test"):
        if missing not in splits:
            fraction = config.val_fraction if missing == "val" else config.test_fraction
            splits["train"], splits[missing] = _carve(splits["train"], fraction, config.split_seed)
    for name in SPLITS:
        if not splits[name]:
            raise EdgepipeError(f"{root}: the {name} split has no images")
    return {name: splits[name] for name in SPLITS}


def _targets(images: list[_Image], view: EvalView, objects: int) -> np.ndarray:
    """[N, objects, 5] rows in model-input pixels: each box where the eval view puts it (stretched or letterboxed)."""
    y = np.zeros((len(images), objects, 5), np.float64)
    y[..., 4] = -1
    for row, image in enumerate(images):
        for slot, (*box, cls) in enumerate(image.boxes):
            y[row, slot, :4], y[row, slot, 4] = view.to_input(np.asarray(box), image.size)[0], cls
    return y.astype(np.float32)


def _load(kind: str, config: DatasetConfig) -> Dataset:
    if not config.path:
        raise EdgepipeError(f"dataset '{kind}' needs dataset.path: "
                            + ("a folder with instances.json and the images" if kind == "coco"
                               else "a folder with images/ and labels/"))
    if config.resize or config.resize_mode == "crop":
        raise EdgepipeError(f"dataset '{kind}': resize (shorter side, then a centre crop) would cut boxes; drop "
                            "dataset.resize: detection images are resized straight to image_size or letterboxed "
                            "(dataset.resize_mode: letterbox)")
    if config.augment is not None:
        raise EdgepipeError(f"dataset '{kind}': dataset.augment would move objects away from their boxes; drop it")
    root = Path(config.path).expanduser()
    if not root.is_dir():
        raise EdgepipeError(f"dataset.path {root} is not a directory")
    found, labels, notes = (_load_coco if kind == "coco" else _load_yolo)(root, config)
    splits = _arrange(found, config, root)
    objects = max(len(image.boxes) for images in splits.values() for image in images)
    if objects == 0 or not labels:
        raise EdgepipeError(f"{root}: no image has any object; a detector needs boxes to learn from")
    size = tuple(int(side) for side in (config.image_size or DEFAULT_SIZE))
    geometry = {"channels": config.channels or 3, "size": list(size), **view_record(config)}
    if config.mean is not None:
        mean, std = list(config.mean), list(config.std)
    else:
        mean, std = _statistics([image.file for image in splits["train"]], geometry, config.split_seed)
    preprocessing = {"kind": "image", "layout": "NCHW", **geometry, "scale": 1 / 255.0, "mean": mean, "std": std,
                     "task": "detection", **notes}
    view = EvalView(geometry)
    made = {name: DetectionFileSplit(root, [image.file for image in images], _targets(images, view, objects),
                                     preprocessing, workers=config.workers)
            for name, images in splits.items()}
    layout = "seeded" if "all" in found else "split-files" if kind == "coco" else "split-folders"
    return Dataset(kind, made["train"], made["val"], made["test"], labels, preprocessing, layout=layout)


def load_coco(config: DatasetConfig) -> Dataset:
    return _load("coco", config)


def load_yolo(config: DatasetConfig) -> Dataset:
    return _load("yolo", config)
