"""Reading real image files into model inputs, the same way for training (imagefolder) and `infer`."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.errors import EdgepipeError, first_line

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
    reference samples all go through this one class.
    """

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        self.size = tuple(int(side) for side in preprocessing["size"])
        self.resize = int(preprocessing["resize"]) if preprocessing.get("resize") else None

    def __call__(self, image) -> np.ndarray:
        from PIL import Image

        height, width = self.size
        if self.resize is None:
            image = image.resize((width, height), Image.BILINEAR)
        else:
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.resize, int(self.resize * long / short)
            image = image.resize((new_short, new_long) if w <= h else (new_long, new_short), Image.BILINEAR)
            w, h = image.size
            top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
            image = image.crop((left, top, left + width, top + height))
        array = np.asarray(image, dtype=np.uint8)
        return array[None, :, :] if array.ndim == 2 else array.transpose(2, 0, 1)


    def to_source(self, boxes: np.ndarray, source_size: tuple[int, int]) -> np.ndarray:
        """Boxes (x1, y1, x2, y2) in model-input pixels back in the pixels of a source image of (width, height):
        the inverse of this view's resize (and centre crop)."""
        width, height = source_size
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if self.resize is None:
            scale = np.array([width / self.size[1], height / self.size[0]] * 2)
            return boxes * scale
        short, long = (width, height) if width <= height else (height, width)
        new_w, new_h = (self.resize, int(self.resize * long / short))
        if width > height:
            new_w, new_h = new_h, new_w
        top, left = int(round((new_h - self.size[0]) / 2.0)), int(round((new_w - self.size[1]) / 2.0))
        shifted = boxes + np.array([left, top, left, top])
        return shifted * np.array([width / new_w, height / new_h] * 2)


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
