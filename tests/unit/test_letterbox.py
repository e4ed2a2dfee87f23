"""Letterbox preprocessing (YOLO's view): hand-computed geometry, pixels, channel order, boxes both ways."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgepipe.data.images import EvalView, to_model_input
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import DatasetConfig


def letterbox(size=(64, 64), **extra) -> EvalView:
    return EvalView({"size": list(size), "resize_mode": "letterbox", "pad_value": 114, **extra})


def test_geometry_matches_a_hand_computed_case():
    # 200 x 100 into 64 x 64: scale min(64/100, 64/200) = 0.32 -> 64 x 32, padded 16 above and 16 below.
    scale, resized, left, top = letterbox().letterbox_geometry((200, 100))
    assert (scale, resized, left, top) == (0.32, (64, 32), 0, 16)
    # 101 x 50: scale 64/101; 50 * 0.6337 = 31.68 -> 32 rows, pad (64 - 32) / 2 = 16 -> round(15.9) = 16.
    assert letterbox().letterbox_geometry((101, 50))[1:] == ((64, 32), 0, 16)
    # 30 x 64 into 64 x 96 (H x W): scale min(64/64, 96/30) = 1 -> unchanged, pad (96 - 30) / 2 = 33 left.
    assert letterbox((64, 96)).letterbox_geometry((30, 64)) == (1.0, (30, 64), 33, 0)


def test_pixels_are_the_image_inside_the_pad():
    image = Image.new("RGB", (200, 100), (200, 100, 50))
    array = letterbox()(image)
    assert array.shape == (3, 64, 64) and array.dtype == np.uint8
    assert (array[:, :16] == 114).all() and (array[:, 48:] == 114).all()
    assert (array[0, 16:48] == 200).all() and (array[2, 16:48] == 50).all()


def test_bgr_reverses_the_channels_and_grayscale_is_untouched():
    image = Image.new("RGB", (64, 64), (10, 20, 30))
    assert letterbox(channel_order="BGR")(image)[:, 0, 0].tolist() == [30, 20, 10]
    assert letterbox()(image)[:, 0, 0].tolist() == [10, 20, 30]
    assert letterbox(channel_order="BGR")(Image.new("L", (32, 32), 7)).shape == (1, 64, 64)


def test_boxes_map_to_the_input_and_back_to_the_source():
    view = letterbox()
    source_box = np.array([50.0, 25.0, 150.0, 75.0])  # in the 200 x 100 source
    on_input = view.to_input(source_box, (200, 100))[0]
    np.testing.assert_allclose(on_input, [16.0, 24.0, 48.0, 40.0])  # x 0.32, then 16 rows down
    np.testing.assert_allclose(view.to_source(on_input, (200, 100))[0], source_box)
    # A box reaching into the padding is clipped to the source image.
    np.testing.assert_allclose(view.to_source(np.array([0.0, 0.0, 64.0, 64.0]), (200, 100))[0], [0, 0, 200, 100])


def test_the_same_bytes_every_time_through_to_model_input():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (77, 131, 3), dtype=np.uint8))
    record = {"size": [64, 64], "resize_mode": "letterbox", "pad_value": 114, "scale": 1 / 255.0,
              "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    first = to_model_input(EvalView(record)(image)[None], record)
    again = to_model_input(EvalView(dict(record))(image.copy())[None], record)
    assert first.tobytes() == again.tobytes()


def test_recipe_refuses_contradicting_views():
    with pytest.raises(ValueError, match="resize_mode crop needs resize"):
        DatasetConfig(name="imagefolder", path=".", resize_mode="crop")
    with pytest.raises(ValueError, match="does not use it"):
        DatasetConfig(name="imagefolder", path=".", resize=256, image_size=(224, 224), resize_mode="letterbox")
    with pytest.raises(EdgepipeError, match="resize_mode"):
        EvalView({"size": [8, 8], "resize_mode": "fisheye"})
