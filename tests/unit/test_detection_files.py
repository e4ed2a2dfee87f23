"""User detection data: COCO and YOLO folders of PIL-drawn rectangles, read into box targets in model-input pixels."""

import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from edgepipe.data import load_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import DatasetConfig

WIDTH, HEIGHT = 80, 60  # source images
SIZE = (64, 64)  # model input (H, W)
SCALE = np.array([SIZE[1] / WIDTH, SIZE[0] / HEIGHT] * 2)
CATEGORIES = [{"id": 7, "name": "blue"}, {"id": 3, "name": "red"}]  # out of id order: class 0 is id 3, "red"
CATEGORY_ID = {0: 3, 1: 7}
COLOURS = {0: (200, 40, 40), 1: (40, 40, 200)}


def _drawn(count=24, seed=0):
    """``count`` 80x60 images of 1-3 filled rectangles of class 0 (red) or 1 (blue): [(name, image, boxes)], boxes
    (x, y, w, h, class) in source pixels."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        image = Image.new("RGB", (WIDTH, HEIGHT), (20, 20, 20))
        draw, boxes = ImageDraw.Draw(image), []
        for _ in range(int(rng.integers(1, 4))):
            w, h = int(rng.integers(6, 30)), int(rng.integers(6, 25))
            x, y, cls = int(rng.integers(0, WIDTH - w + 1)), int(rng.integers(0, HEIGHT - h + 1)), int(rng.integers(2))
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=COLOURS[cls])
            boxes.append((x, y, w, h, cls))
        items.append((f"img{i:02d}.png", image, boxes))
    return items


def _write_coco(root, items, json_name="instances.json", folder="images"):
    (root / folder).mkdir(parents=True, exist_ok=True)
    images, notes = [], []
    for index, (name, image, boxes) in enumerate(items):
        image.save(root / folder / name)
        images.append({"id": 100 + index, "file_name": name, "width": WIDTH, "height": HEIGHT})
        for x, y, w, h, cls in boxes:
            notes.append({"id": len(notes) + 1, "image_id": 100 + index, "category_id": CATEGORY_ID[cls],
                          "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    (root / json_name).write_text(json.dumps({"images": images, "annotations": notes, "categories": CATEGORIES}))
    return root


def _write_yolo(root, items, split=None, names=("red", "blue")):
    images, labels = (root / "images", root / "labels") if split is None else \
        (root / "images" / split, root / "labels" / split)
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for name, image, boxes in items:
        image.save(images / name)
        lines = [f"{cls} {(x + w / 2) / WIDTH:.6f} {(y + h / 2) / HEIGHT:.6f} {w / WIDTH:.6f} {h / HEIGHT:.6f}"
                 for x, y, w, h, cls in boxes]
        (labels / name).with_suffix(".txt").write_text("\n".join(lines) + "\n")
    if names is not None:
        (root / "data.yaml").write_text(yaml.safe_dump({"names": dict(enumerate(names))}))
    return root


def _config(name, root, **extra):
    return DatasetConfig(name=name, path=str(root), image_size=SIZE, workers=0, **extra)


def _splits(data):
    return {"train": data.train, "val": data.val, "test": data.test}


def _expected(split, items, objects):
    """The targets the split should hold: each file's boxes scaled per axis to the 64x64 model input."""
    boxes = {name: rows for name, _, rows in items}
    y = np.zeros((len(split), objects, 5))
    y[..., 4] = -1
    for row, file in enumerate(split.files):
        for slot, (x, top, w, h, cls) in enumerate(boxes[file.name]):
            y[row, slot] = [*(np.array([x, top, x + w, top + h]) * SCALE), cls]
    return y


@pytest.fixture(scope="module")
def items():
    return _drawn()


@pytest.fixture(scope="module")
def coco(tmp_path_factory, items):
    return load_dataset(_config("coco", _write_coco(tmp_path_factory.mktemp("coco"), items)))


def test_coco_shapes_record_and_boxes_in_model_input_pixels(coco, items):
    objects = max(len(boxes) for _, _, boxes in items)
    assert [len(split) for split in _splits(coco).values()] == [17, 2, 5]
    assert coco.labels == ["red", "blue"] and coco.input_shape == (3, 64, 64) and coco.layout == "seeded"
    record = coco.preprocessing
    assert record["task"] == "detection" and record["size"] == [64, 64] and record["crowd_dropped"] == 0
    assert record["kind"] == "image" and record["layout"] == "NCHW" and len(record["mean"]) == 3
    names = [file.name for split in _splits(coco).values() for file in split.files]
    assert sorted(names) == sorted(name for name, _, _ in items)  # every image once: disjoint splits
    for split in _splits(coco).values():
        assert split.y.dtype == np.float32 and split.y.shape == (len(split), objects, 5)
        np.testing.assert_allclose(split.y, _expected(split, items, objects), atol=1e-4)
    batch = next(coco.train.batches(8))
    assert batch.shape == (8, 3, 64, 64) and batch.dtype == np.float32


def test_yolo_of_the_same_data_gives_the_same_targets(tmp_path, coco, items):
    data = load_dataset(_config("yolo", _write_yolo(tmp_path, items)))
    assert data.labels == ["red", "blue"] and data.preprocessing["task"] == "detection"
    for ours, theirs in zip(_splits(data).values(), _splits(coco).values(), strict=True):
        assert [f.name for f in ours.files] == [f.name for f in theirs.files]
        np.testing.assert_allclose(ours.y, theirs.y, atol=1e-3)
    assert data.preprocessing["mean"] == pytest.approx(coco.preprocessing["mean"])


@pytest.mark.parametrize("names, expected", [(["a", "b"], ["a", "b"]), ({1: "b", 0: "a"}, ["a", "b"]),
                                             (None, ["0", "1"])])
def test_yolo_labels_from_data_yaml(tmp_path, items, names, expected):
    _write_yolo(tmp_path, items, names=None)
    if names is not None:
        (tmp_path / "data.yaml").write_text(yaml.safe_dump({"names": names, "nc": 2}))
    assert load_dataset(_config("yolo", tmp_path)).labels == expected


def test_declared_names_give_the_models_full_class_list(tmp_path, items):
    """A folder that shows classes 0 and 1 of a 4-class model (no data.yaml): dataset.names says there are four."""
    _write_yolo(tmp_path, items, names=None)
    data = load_dataset(_config("yolo", tmp_path, names=["red", "blue", "green", "grey"]))
    assert data.labels == ["red", "blue", "green", "grey"] and data.num_classes == 4
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"names": ["red", "blue"]}))
    with pytest.raises(EdgepipeError, match="dataset.names lists 4 classes, .*data.yaml names 2"):
        load_dataset(_config("yolo", tmp_path, names=["red", "blue", "green", "grey"]))
    with pytest.raises(ValueError, match="names is for yolo folders"):
        _config("coco", tmp_path, names=["a"])
    with pytest.raises(ValueError, match="lists 'a' twice"):
        _config("yolo", tmp_path, names=["a", "b", "a"])


@pytest.mark.parametrize("layout", ["ultralytics", "roboflow"])
def test_yolo_split_folders_are_taken_as_given(tmp_path, items, layout):
    parts = {"train": items[:16], "val": items[16:20], "test": items[20:]}
    for split, chosen in parts.items():
        if layout == "ultralytics":
            _write_yolo(tmp_path, chosen, split=split)
        else:
            _write_yolo(tmp_path / ("valid" if split == "val" else split), chosen)
    data = load_dataset(_config("yolo", tmp_path))
    assert data.layout == "split-folders"
    for split, chosen in parts.items():
        assert [f.name for f in getattr(data, split).files] == [name for name, _, _ in chosen]
        np.testing.assert_allclose(getattr(data, split).y, _expected(getattr(data, split), items, 3), atol=1e-4)


def test_coco_split_files_are_taken_as_given_and_test_is_carved(tmp_path, items):
    _write_coco(tmp_path, items[:20], json_name="instances_train.json")
    _write_coco(tmp_path, items[20:], json_name="instances_val.json")
    data = load_dataset(_config("coco", tmp_path))
    assert data.layout == "split-files"
    assert [f.name for f in data.val.files] == [name for name, _, _ in items[20:]]
    assert len(data.train) + len(data.test) == 20 and len(data.test) == 4


def test_annotations_field_crowds_and_negatives(tmp_path, items):
    _write_coco(tmp_path, items, json_name="custom.json")
    coco = json.loads((tmp_path / "custom.json").read_text())
    first = coco["images"][0]["id"]
    coco["annotations"] = [note for note in coco["annotations"] if note["image_id"] != first]  # a negative image
    coco["annotations"][0]["iscrowd"] = 1
    coco["annotations"][1]["iscrowd"] = 1
    (tmp_path / "custom.json").write_text(json.dumps(coco))
    data = load_dataset(_config("coco", tmp_path, annotations="custom.json"))
    assert data.preprocessing["crowd_dropped"] == 2
    assert sum(len(split) for split in _splits(data).values()) == 24
    rows = {f.name: y for split in _splits(data).values() for f, y in zip(split.files, split.y, strict=True)}
    assert (rows["img00.png"][:, 4] == -1).all() and (rows["img00.png"][:, :4] == 0).all()


def test_fingerprint_changes_when_one_label_changes(tmp_path, items):
    root = _write_yolo(tmp_path, items)
    config = _config("yolo", root)
    before = load_dataset(config).fingerprint()
    assert load_dataset(config).fingerprint() == before
    label = root / "labels" / "img05.txt"
    first, *rest = label.read_text().splitlines()
    label.write_text("\n".join([str(1 - int(first[0])) + first[1:], *rest]))  # one object changes class
    assert load_dataset(config).fingerprint() != before


def _coco_edit(change):
    def edit(root):
        coco = json.loads((root / "instances.json").read_text())
        change(coco)
        (root / "instances.json").write_text(json.dumps(coco))
    return edit


def _set_note(key, value):
    return _coco_edit(lambda coco: coco["annotations"][0].__setitem__(key, value))


def _first_label(text):
    def edit(root):
        (root / "labels" / "img00.txt").write_text(text)
    return edit


def _keep_images(count, fmt):
    def edit(root):
        for file in sorted((root / "images").iterdir())[count:]:
            file.unlink()
        if fmt == "coco":
            _coco_edit(lambda coco: coco.update(images=coco["images"][:count], annotations=[
                note for note in coco["annotations"] if note["image_id"] < 100 + count]))(root)
    return edit


def _corrupt_image(root):
    (root / "images" / "img03.png").write_text("not a png")


BAD_COCO = [
    (lambda root: (root / "instances.json").unlink(), "no instances.json"),
    (lambda root: (root / "instances.json").write_text("{"), "not readable JSON"),
    (lambda root: (root / "instances.json").write_text('{"info": {}}'), "not COCO instances (no 'images' list)"),
    (_coco_edit(lambda coco: coco.pop("annotations")), "no 'annotations' list"),
    (_set_note("image_id", 999), "points to unknown image_id 999"),
    (_set_note("category_id", 42), "points to unknown category_id 42"),
    (_set_note("bbox", [70, 10, 20, 10]), "box (x1, y1, x2, y2) = (70, 10, 90, 20) is outside the 80x60 image"),
    (_set_note("bbox", [-5, 10, 20, 10]), "is outside the 80x60 image"),
    (_set_note("bbox", [10, 10, 0, 10]), "box width 0 is not positive"),
    (_set_note("bbox", [10, 10, 5, -3]), "box height -3 is not positive"),
    (_set_note("bbox", [10, 10, 5]), "expected [x, y, width, height]"),
    (_coco_edit(lambda coco: coco["images"][1].update(file_name="missing.png")), "'missing.png' is not in"),
    (_coco_edit(lambda coco: coco["images"][1].update(width=81)), "is said to be 81x60"),
    (_corrupt_image, "img03.png: not a readable image"),
    (_keep_images(0, "coco"), "the dataset has no images"),
    (_keep_images(8, "coco"), "has only 8 images; need at least 10"),
    (_coco_edit(lambda coco: coco.update(annotations=[])), "no image has any object"),
]

BAD_YOLO = [
    (_first_label("0 0.5 0.5 0.2\n"), "img00.txt:1: expected 'class cx cy w h'"),
    (_first_label("0 0.5 0.5 0.2 0.2\ncat 0.5 0.5 0.2 0.2\n"), "img00.txt:2: expected 'class cx cy w h'"),
    (_first_label("0.5 0.5 0.5 0.2 0.2\n"), "expected 'class cx cy w h'"),
    (_first_label("0 1.2 0.5 0.1 0.1\n"), "must be normalized to [0, 1], got 1.2 0.5 0.1 0.1"),
    (_first_label("2 0.5 0.5 0.1 0.1\n"), "class 2, but the dataset names 2 classes"),
    (_first_label("0 0.95 0.5 0.3 0.1\n"), "is outside the 80x60 image"),
    (_first_label("0 0.5 0.5 0 0.1\n"), "box width 0 is not positive"),
    (lambda root: shutil.rmtree(root / "images"), "no images/ folder"),
    (lambda root: (root / "images" / "notes.txt").write_text("hi"), "notes.txt: not an image file"),
    (_corrupt_image, "img03.png: not a readable image"),
    (_keep_images(0, "yolo"), "the dataset has no images"),
    (_keep_images(9, "yolo"), "has only 9 images; need at least 10"),
    (lambda root: shutil.rmtree(root / "labels"), "no image has any object"),
    (lambda root: (root / "data.yaml").write_text("names: 3\n"), "'names' must be a list"),
]


BAD = [("coco", *case) for case in BAD_COCO] + [("yolo", *case) for case in BAD_YOLO]


@pytest.mark.parametrize("fmt, edit, message", BAD, ids=[f"{fmt}-{message[:40]}" for fmt, _, message in BAD])
def test_bad_input_is_one_line_naming_the_problem(tmp_path, items, fmt, edit, message):
    root = (_write_coco if fmt == "coco" else _write_yolo)(tmp_path, items)
    edit(root)
    with pytest.raises(EdgepipeError) as caught:
        load_dataset(_config(fmt, root))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_centre_crop_or_augmentation_is_refused(tmp_path):
    with pytest.raises(EdgepipeError, match="resize .* would cut boxes"):
        load_dataset(DatasetConfig(name="coco", path=str(tmp_path), image_size=SIZE, resize=80))
    with pytest.raises(EdgepipeError, match="augment would move objects"):
        load_dataset(DatasetConfig(name="yolo", path=str(tmp_path), augment={"horizontal_flip": 0.5}))
    with pytest.raises(EdgepipeError, match="needs dataset.path"):
        load_dataset(DatasetConfig(name="yolo"))


def test_a_training_batch_plugs_into_the_detection_loss(coco):
    import torch

    from edgepipe.tasks import task_named
    from edgepipe.tasks.detection import CenterNetLoss

    task = task_named("detection", coco.preprocessing)
    y_train = torch.from_numpy(task.targets(coco.train))
    assert y_train.shape[0] == len(coco.train)
    order = [torch.randperm(len(coco.train), generator=torch.Generator().manual_seed(0))[:6]]
    (inputs,) = list(coco.train.train_batches(order))
    targets = y_train[order[0]]
    assert inputs.shape == (6, 3, 64, 64) and targets.shape == (6, 3, 5)
    heatmap = torch.zeros(6, len(coco.labels), 16, 16, requires_grad=True)
    box = torch.zeros(6, 4, 16, 16, requires_grad=True)
    loss = CenterNetLoss((64, 64))((heatmap, box), targets)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0 and heatmap.grad.abs().sum() > 0
    assert isinstance(task.loss(None), CenterNetLoss)
