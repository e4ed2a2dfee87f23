import numpy as np
import pytest
from PIL import Image

from edgepipe.data import load_dataset
from edgepipe.data.images import preprocess_files
from edgepipe.data.sample_folder import write_sample_folder
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


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory):
    """The generated folder users try the recipes on: JPEG and PNG, mixed sizes, a few grayscale and RGBA."""
    return write_sample_folder(tmp_path_factory.mktemp("shapes"), images=96, sizes=(40, 72), seed=3)


def test_the_sample_folder_has_what_real_folders_have(shapes_folder):
    files = sorted(p for p in shapes_folder.rglob("*") if p.is_file())
    modes = {Image.open(f).mode for f in files}
    sizes = {Image.open(f).size for f in files}
    assert {f.suffix for f in files} == {".jpg", ".png"} and {"RGB", "L", "RGBA"} <= modes
    assert len(sizes) > 40 and any(w != h for w, h in sizes)


def test_one_eval_view_for_training_infer_and_the_bundle(shapes_folder):
    """Resize-shorter-side + centre crop, scale and normalize: the split, `infer` and the bundle's samples agree
    to the bit (the bundle stores `take`, `infer` runs preprocess_files)."""
    data = load_dataset(DatasetConfig(name="imagefolder", path=str(shapes_folder), image_size=(32, 32), resize=36,
                                      workers=2))
    test = data.test
    assert data.preprocessing["resize"] == 36 and data.input_shape == (3, 32, 32)
    streamed = np.concatenate(list(test.batches(7)))  # through DataLoader workers
    assert streamed.shape == (len(test), 3, 32, 32) and streamed.dtype == np.float32
    np.testing.assert_array_equal(streamed, preprocess_files(test.files, data.preprocessing))
    np.testing.assert_array_equal(streamed[:5], test.take(5))
    np.testing.assert_array_equal(streamed[[4, 1]], test.take(2, [4, 1]))
    # normalized by statistics of training images: roughly zero-mean, unit-variance per channel
    train = np.concatenate(list(data.train.batches(64)))
    assert np.all(np.abs(train.mean(axis=(0, 2, 3))) < 0.15) and np.all(np.abs(train.std(axis=(0, 2, 3)) - 1) < 0.15)


def test_a_calibration_folder_at_any_size_goes_through_the_eval_view(shapes_folder, tmp_path):
    """Users' calibration photos are not at the model's size: they get the eval view (resize, centre crop,
    normalization) the model was evaluated with, not a refusal."""
    import shutil

    from edgepipe.quant.calibration import load_calibration_set

    data = load_dataset(DatasetConfig(name="imagefolder", path=str(shapes_folder), image_size=(32, 32), resize=36,
                                      workers=0))
    folder = tmp_path / "calib"
    folder.mkdir()
    for file in data.val.files[:6]:
        shutil.copy(file, folder / file.name)
    assert len({Image.open(f).size for f in folder.iterdir()}) > 1  # mixed sizes, none of them 32x32
    calibration = load_calibration_set(folder, dataset_loader=None, preprocessing=data.preprocessing,
                                       input_shape=(None, 3, 32, 32))
    np.testing.assert_array_equal(calibration.data, preprocess_files(sorted(folder.iterdir()), data.preprocessing))
    assert calibration.definition["eval_view"] == {"size": [32, 32], "resize": 36}


def test_training_batches_are_augmented_and_reproducible(shapes_folder):
    import torch

    config = DatasetConfig(name="imagefolder", path=str(shapes_folder), image_size=(32, 32), workers=2,
                           augment={"random_resized_crop": [0.4, 1], "horizontal_flip": 0.5, "color_jitter": 0.3})
    data = load_dataset(config)
    order = [torch.arange(0, 8), torch.arange(8, 16)]

    def epoch():
        torch.manual_seed(11)  # the DataLoader seeds its workers from torch's generator
        return [batch.clone() for batch in data.train.train_batches(order)]

    first, again = epoch(), epoch()
    assert [b.shape for b in first] == [(8, 3, 32, 32)] * 2
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    plain = data.train.take(8)
    assert not np.allclose(first[0].numpy(), plain)  # augmentation changed the pixels; eval view did not


def test_train_val_test_folders_are_taken_as_given_and_hashed(tmp_path):
    root = write_sample_folder(tmp_path / "split", images=80, sizes=(24, 40), seed=1, splits=True)
    config = DatasetConfig(name="imagefolder", path=str(root), image_size=(16, 16))
    data = load_dataset(config)
    assert data.layout == "split-folders"
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        assert {f.relative_to(root).parts[0] for f in split.files} == {name}
    hashes, fingerprint = data.split_hashes(), data.fingerprint()
    assert len(set(hashes.values())) == 3
    extra = next((root / "test" / "circle").iterdir())
    Image.open(extra).save(extra.with_name("added.png"))
    changed = load_dataset(config)
    assert changed.split_hashes()["test"] != hashes["test"] and changed.split_hashes()["train"] == hashes["train"]
    assert changed.fingerprint() != fingerprint


def test_a_file_corrupt_past_its_header_is_one_line_from_a_worker(tmp_path):
    root = write_sample_folder(tmp_path / "imgs", images=260, sizes=(24, 32), seed=2)
    victim = max(root.rglob("*.jpg"), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:-200])  # the header still parses; the scan data ends early
    data = load_dataset(DatasetConfig(name="imagefolder", path=str(root), image_size=(16, 16), workers=2,
                                      mean=[0.5] * 3, std=[0.25] * 3))
    split = next(s for s in (data.train, data.val, data.test) if victim in s.files)
    with pytest.raises(EdgepipeError) as info:
        list(split.batches(16))
    assert "\n" not in str(info.value) and victim.name in str(info.value)


def test_a_bad_view_is_refused_by_the_recipe():
    with pytest.raises(ValueError, match="smaller than the image_size"):
        DatasetConfig(name="imagefolder", image_size=(32, 32), resize=24)
    with pytest.raises(ValueError, match="3 channel"):
        DatasetConfig(name="imagefolder", mean=[0.5], std=[0.2])
    with pytest.raises(ValueError, match="area range"):
        DatasetConfig(name="imagefolder", augment={"random_resized_crop": [0.9, 0.2]})


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


def test_the_eval_view_computes_what_torchvision_does_without_torch(shapes_folder):
    """`infer` on a device has no PyTorch: the PIL + numpy view must equal transforms.v2 Resize + CenterCrop."""
    import torch
    from torchvision.transforms import v2

    from edgepipe.data.images import decode, eval_view

    reference = v2.Compose([v2.Resize(36), v2.CenterCrop([32, 30]), v2.PILToTensor()])
    view = eval_view({"size": [32, 30], "resize": 36})
    for file in sorted(shapes_folder.rglob("*"))[:12]:
        if file.is_file():
            image = decode(file, 3)
            assert torch.equal(torch.from_numpy(view(image)), reference(image)), file.name


def test_evaluation_batches_are_sized_by_bytes_not_count():
    """512 photos at 224x224 per batch held ~1.5 GB of activations: the peak of a whole train run."""
    from edgepipe.data.base import eval_batch_size

    assert eval_batch_size((1, 28, 28)) == 512  # digits: as before
    assert eval_batch_size((3, 224, 224)) == 55 and eval_batch_size((3, 640, 640)) == 6
    assert eval_batch_size((3, 4096, 4096)) == 1 and eval_batch_size((3, 224, 224), most=16) == 16
