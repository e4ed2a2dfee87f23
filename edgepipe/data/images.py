"""Reading real image files into model inputs, the same way for training (imagefolder) and `infer`."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.errors import EdgepipeError, first_line

RESIZE_MODES = ("stretch", "crop", "letterbox")  # straight to size; shorter side + centre crop; fit + pad (YOLO)
LETTERBOX_PAD = 114  # ultralytics' grey
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def open_image(path: Path, what: str = "image"):
    """PIL's lazy image of ``path``; a file that is not an image, or a decompression bomb, is one line."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL warns between 89 M and 179 M pixels and raises above: both mean "not a model input".
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # a 30000x30000 PNG of a few KB
        raise EdgepipeError(f"{path}: {what} too large to decode safely ({first_line(exc)[:120]})") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise EdgepipeError(f"{path}: not a readable {what} ({type(exc).__name__}: {first_line(exc)})") from None


def decode(path: Path, channels: int):
    """Decode one file to a PIL image in the model's colour mode (grayscale, palette, RGBA and CMYK convert)."""
    try:
        with open_image(path) as image:
            image.load()  # a truncated file fails here, not later inside a transform
            return image.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError) as exc:  # truncated or corrupt past the header
        raise EdgepipeError(f"{path}: not a readable image ({type(exc).__name__}: {first_line(exc)})") from None


class EvalView:
    """The deterministic geometry of a recorded preprocessing: PIL image → uint8 CHW array at the model's size.

    ``resize`` (when recorded) scales the shorter side, then the centre ``size`` is cropped, as ImageNet models
    are evaluated (256 → 224); without it the image is resized straight to ``size``. PIL and numpy only, with
    torchvision's size and crop rounding (``transforms.v2.Resize(int)``, ``CenterCrop``), so `infer` on a device
    without PyTorch computes what training evaluated on: training, `infer`, calibration and the bundle's
    reference samples all go through this one class. ``resize_mode: letterbox`` fits the whole image inside
    ``size`` and pads it with ``pad_value`` (as YOLO detectors are evaluated); ``channel_order: BGR`` for models
    trained on OpenCV's order.
    """

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        self.size = tuple(int(side) for side in preprocessing["size"])
        self.resize = int(preprocessing["resize"]) if preprocessing.get("resize") else None
        self.mode = preprocessing.get("resize_mode") or ("crop" if self.resize else "stretch")
        if self.mode not in RESIZE_MODES:
            raise EdgepipeError(f"preprocessing resize_mode {self.mode!r}: one of {', '.join(RESIZE_MODES)}")
        self.pad_value = int(preprocessing.get("pad_value", LETTERBOX_PAD))
        self.bgr = preprocessing.get("channel_order", "RGB") == "BGR"

    def __call__(self, image) -> np.ndarray:
        from PIL import Image

        height, width = self.size
        if self.mode == "letterbox":
            return self._letterbox(image)
        if self.mode == "stretch":
            image = image.resize((width, height), Image.BILINEAR)
        else:
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.resize, int(self.resize * long / short)
            image = image.resize((new_short, new_long) if w <= h else (new_long, new_short), Image.BILINEAR)
            w, h = image.size
            top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
            image = image.crop((left, top, left + width, top + height))
        return self._chw(np.asarray(image, dtype=np.uint8))

    def _chw(self, array: np.ndarray) -> np.ndarray:
        if array.ndim == 2:
            return array[None, :, :]
        array = array.transpose(2, 0, 1)
        return np.ascontiguousarray(array[::-1]) if self.bgr else array

    def letterbox_geometry(self, source_size: tuple[int, int]) -> tuple[float, tuple[int, int], int, int]:
        """(scale, resized (width, height), left pad, top pad) for a source of (width, height): ultralytics'
        LetterBox arithmetic (ultralytics/data/augment.py: ratio min(h/H, w/W), unpadded size rounded, the
        padding split with round(d - 0.1) before and round(d + 0.1) after), so boxes map back as its
        scale_boxes does."""
        width, height = source_size
        scale = min(self.size[0] / height, self.size[1] / width)
        resized = (int(round(width * scale)), int(round(height * scale)))
        pad_w, pad_h = (self.size[1] - resized[0]) / 2, (self.size[0] - resized[1]) / 2
        return scale, resized, int(round(pad_w - 0.1)), int(round(pad_h - 0.1))

    def _letterbox(self, image) -> np.ndarray:
        from PIL import Image

        _, resized, left, top = self.letterbox_geometry(image.size)
        if image.size != resized:
            image = image.resize(resized, Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
        canvas = np.full((self.size[0], self.size[1], *pixels.shape[2:]), self.pad_value, np.uint8)
        canvas[top:top + resized[1], left:left + resized[0]] = pixels
        return self._chw(canvas)

    def to_input(self, boxes: np.ndarray, source_size: tuple[int, int]) -> np.ndarray:
        """Boxes (x1, y1, x2, y2) in a source image's pixels as this view places them in the model input (what a
        dataset's annotations become); the inverse of :meth:`to_source`. Only for views that keep the whole image."""
        width, height = source_size
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if self.mode == "letterbox":
            scale, _, left, top = self.letterbox_geometry(source_size)
            return boxes * scale + np.array([left, top, left, top])
        if self.mode == "stretch":
            return boxes * np.array([self.size[1] / width, self.size[0] / height] * 2)
        raise EdgepipeError("a centre crop cuts boxes: detection data is resized straight or letterboxed")

    def to_source(self, boxes: np.ndarray, source_size: tuple[int, int]) -> np.ndarray:
        """Boxes (x1, y1, x2, y2) in model-input pixels back in the pixels of a source image of (width, height):
        the inverse of this view's resize (and centre crop or letterbox padding), clipped to the image."""
        width, height = source_size
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if self.mode == "letterbox":
            scale, _, left, top = self.letterbox_geometry(source_size)
            mapped = (boxes - np.array([left, top, left, top])) / scale
            return np.clip(mapped, 0, np.array([width, height, width, height], np.float64))
        if self.mode == "stretch":
            scale = np.array([width / self.size[1], height / self.size[0]] * 2)
            return boxes * scale
        short, long = (width, height) if width <= height else (height, width)
        new_w, new_h = (self.resize, int(self.resize * long / short))
        if width > height:
            new_w, new_h = new_h, new_w
        top, left = int(round((new_h - self.size[0]) / 2.0)), int(round((new_w - self.size[1]) / 2.0))
        shifted = boxes + np.array([left, top, left, top])
        return shifted * np.array([width / new_w, height / new_h] * 2)


def view_record(config) -> dict[str, Any]:
    """What a dataset config's view adds to the preprocessing record beyond its size and crop: only what differs
    from the default, so records (and the hashes of the runs that carry them) stay as they were."""
    record: dict[str, Any] = {}
    if config.resize_mode == "letterbox":
        record.update(resize_mode="letterbox", pad_value=int(config.pad_value))
    if config.channel_order == "BGR":
        record["channel_order"] = "BGR"
    return record


def eval_view(preprocessing: dict[str, Any]) -> EvalView:
    return EvalView(preprocessing)


def to_model_input(batch: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """uint8 NCHW images → the model's normalized float32 input (the recorded scale, mean and std)."""
    batch = batch.astype(np.float32)
    batch *= float(preprocessing["scale"])
    mean = np.asarray(preprocessing["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(preprocessing["std"], np.float32).reshape(1, -1, 1, 1)
    batch = (batch - mean) / std
    if preprocessing.get("layout") == "NTF":  # recurrent models read rows as time steps
        batch = batch[:, 0, :, :]
    return batch


def read_image(path: Path, preprocessing: dict[str, Any]) -> np.ndarray:
    """Decode one file and bring it to the model's size: uint8 CHW."""
    return eval_view(preprocessing)(decode(path, int(preprocessing["channels"])))


def preprocess_files(paths: list[Path], preprocessing: dict[str, Any]) -> np.ndarray:
    """Apply a manifest's recorded preprocessing to image files: the model-ready float32 batch."""
    if preprocessing.get("kind") != "image":
        raise EdgepipeError("this model was not trained on images; `infer` needs an image model")
    return to_model_input(np.stack([read_image(Path(p), preprocessing) for p in paths]), preprocessing)


def list_images(folder: Path) -> list[Path]:
    """The image files under ``folder``, each one inside it once symlinks are resolved (else one line)."""
    from edgepipe.data.paths import files_inside

    return files_inside(sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                        folder, "image")
