import numpy as np
import pytest
from PIL import Image

from edgepipe.data import load_dataset
from edgepipe.data.images import preprocess_files
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import DatasetConfig


def _rows(split):
    return {row.tobytes() for row in split.x.reshape(len(split.x), -1)}


@pytest.mark.parametrize("name", ["mnist5k", "seqmnist", "digits", "synthetic"])
def test_splits_are_disjoint_stratified_and_seeded(name):
    config = DatasetConfig(name=name)
    first, second = load_dataset(config), load_dataset(config)
    assert first.fingerprint() == second.fingerprint()
    assert not (_rows(first.train) & _rows(first.test)) and not (_rows(first.val) & _rows(first.test))
    assert set(np.unique(first.test.y)) == set(range(first.num_classes))
    other = load_dataset(DatasetConfig(name=name, split_seed=1))
    assert other.fingerprint() != first.fingerprint()
    assert first.train.x.dtype == np.float32 and first.train.y.dtype == np.int64


def test_mnist5k_is_the_real_5000_digits():
    data = load_dataset(DatasetConfig(name="mnist5k"))
    assert data.input_shape == (1, 28, 28)
    assert len(data.train) + len(data.val) + len(data.test) == 5000
    assert len(data.test) == 1000
    assert abs(float(data.train.x.mean())) < 0.1  # normalized with MNIST statistics


def test_seqmnist_rows_are_time_steps():
    assert load_dataset(DatasetConfig(name="seqmnist")).input_shape == (28, 28)


def _make_folder(root, classes=("cat", "dog"), per_class=12, size=(20, 24), mode="RGB"):
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((*size, 3)) * 80 + index * 150).astype(np.uint8)
            Image.fromarray(pixels, "RGB").convert(mode).save(root / name / f"{i}.png")
    return root


def test_imagefolder_reads_resizes_and_normalizes(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    data = load_dataset(DatasetConfig(name="imagefolder", path=str(root), image_size=(16, 16), channels=3))
    assert data.labels == ["cat", "dog"]
    assert data.input_shape == (3, 16, 16)
    assert len(data.train) + len(data.val) + len(data.test) == 24
    gray = load_dataset(DatasetConfig(name="imagefolder", path=str(root), image_size=(8, 8), channels=1))
    assert gray.input_shape == (1, 8, 8)


def test_preprocess_files_matches_training_pipeline(tmp_path):
    root = _make_folder(tmp_path / "imgs", mode="L")
    data = load_dataset(DatasetConfig(name="imagefolder", path=str(root), image_size=(20, 24), channels=1))
    files = sorted((root / "cat").glob("*.png"))[:2]
    batch = preprocess_files(files, data.preprocessing)
    assert batch.shape == (2, 1, 20, 24) and batch.dtype == np.float32


@pytest.mark.parametrize("problem", ["not-an-image", "missing", "one-class", "empty-class"])
def test_imagefolder_bad_input_is_one_line(tmp_path, problem):
    root = tmp_path / "imgs"
    if problem == "not-an-image":
        _make_folder(root)
        (root / "cat" / "notes.png").write_text("this is text, not a PNG")
    elif problem == "one-class":
        _make_folder(root, classes=("cat",))
    elif problem == "empty-class":
        _make_folder(root)
        (root / "bird").mkdir()
    with pytest.raises(EdgepipeError) as info:
        load_dataset(DatasetConfig(name="imagefolder", path=str(root)))
    assert "\n" not in str(info.value)
    if problem == "not-an-image":
        assert "notes.png" in str(info.value)
