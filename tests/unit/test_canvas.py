import numpy as np
import pytest
from helpers.graphs import canvas_sources
from helpers.recipes import write_recipe
from pydantic import ValidationError

from edgepipe.data import load_dataset
from edgepipe.data.mnist import MNIST_MEAN, MNIST_STD
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import DatasetConfig, load_recipe

CONFIG = DatasetConfig(name="mnist-canvas", canvases=300)


@pytest.fixture(scope="module")
def data():
    return load_dataset(CONFIG)


def _splits(data):
    return {"train": data.train, "val": data.val, "test": data.test}


def test_shapes_dtypes_and_record(data):
    assert [len(split) for split in _splits(data).values()] == [210, 30, 60]
    for split in _splits(data).values():
        assert split.x.dtype == np.float32 and split.x.shape[1:] == (1, 96, 96)
        assert split.y.dtype == np.float32 and split.y.shape[1:] == (4, 5)
    assert data.input_shape == (1, 96, 96) and data.labels == [str(d) for d in range(10)]
    assert data.preprocessing["size"] == [96, 96] and data.preprocessing["task"] == "detection"
    assert data.preprocessing["mean"] == [MNIST_MEAN] and data.preprocessing["std"] == [MNIST_STD]


def test_boxes_are_inside_sized_and_inked(data):
    for split in _splits(data).values():
        images = split.x[:, 0] * MNIST_STD + MNIST_MEAN
        present = split.y[..., 4] >= 0
        assert ((present.sum(axis=1) >= 1) & (present.sum(axis=1) <= 4)).all()
        # placed objects come first; padding rows are zero boxes of class -1
        assert (present[:, :-1] | ~present[:, 1:]).all()
        assert (split.y[~present] == [0, 0, 0, 0, -1]).all()
        boxes = split.y[present]
        assert (boxes[:, 4] == np.round(boxes[:, 4])).all() and set(np.unique(boxes[:, 4])) <= set(range(10))
        x1, y1, x2, y2 = boxes[:, :4].T
        assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 96).all() and (y2 <= 96).all()
        assert (x2 > x1).all() and (y2 > y1).all()
        longer = np.maximum(x2 - x1, y2 - y1)
        assert longer.min() >= 14 and longer.max() <= 42
        for n, k in zip(*np.nonzero(present), strict=True):
            left, top, right, bottom = split.y[n, k, :4].astype(int)
            inside = images[n, top:bottom, left:right]
            assert inside.max() > 0.6  # a digit's strokes, not clutter
            # the box is the ink bounds (> 0.2 before the noise, sigma <= 0.05): ink on every edge row and column
            ink = inside > 0.1
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()


def test_seeded_and_deterministic(data):
    again = load_dataset(CONFIG)
    assert again.fingerprint() == data.fingerprint()
    assert np.array_equal(again.train.x, data.train.x) and np.array_equal(again.test.y, data.test.y)
    other = load_dataset(DatasetConfig(name="mnist-canvas", canvases=300, split_seed=1))
    assert other.fingerprint() != data.fingerprint()


def test_splits_draw_on_disjoint_digits(data):
    sources = canvas_sources(CONFIG)
    used = {name: set(found[found >= 0].tolist()) for name, found in sources.items()}
    assert not (used["train"] & used["val"]) and not (used["train"] & used["test"]) and not (used["val"] & used["test"])
    for name, split in _splits(data).items():
        assert np.array_equal(sources[name] >= 0, split.y[..., 4] >= 0)


def test_classes_are_balanced(data):
    classes = data.train.y[..., 4]
    counts = np.bincount(classes[classes >= 0].astype(int), minlength=10)
    assert counts.min() >= 0.6 * counts.mean() and counts.max() <= 1.4 * counts.mean()


def test_other_canvas_sizes():
    wide = load_dataset(DatasetConfig(name="mnist-canvas", canvases=20, image_size=(64, 128)))
    assert wide.input_shape == (1, 64, 128) and wide.preprocessing["size"] == [64, 128]
    boxes = wide.train.y[wide.train.y[..., 4] >= 0]
    assert (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 64).all()
    with pytest.raises(EdgepipeError, match="image_size"):
        load_dataset(DatasetConfig(name="mnist-canvas", canvases=20, image_size=(32, 32)))


def test_recipe_accepts_canvases(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "a.yaml", dataset={"name": "mnist-canvas", "canvases": 300}))
    assert recipe.dataset.name == "mnist-canvas" and recipe.dataset.canvases == 300
    with pytest.raises(EdgepipeError, match="dataset.canvases"):
        load_recipe(write_recipe(tmp_path / "b.yaml", dataset={"name": "mnist-canvas", "canvases": 0}))
    with pytest.raises(ValidationError):
        DatasetConfig.model_validate({"name": "mnist-canvas", "canvases": 0})
