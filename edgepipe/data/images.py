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


def read_image(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """Decode, convert and resize one file; returns uint8 CHW. A file that is not an image is a user error."""
    from PIL import Image

    try:
        with open_image(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            image = image.resize((size[1], size[0]), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as exc:  # truncated or corrupt past the header
        raise EdgepipeError(f"{path}: not a readable image ({type(exc).__name__}: {first_line(exc)})") from None
    return array[None, :, :] if channels == 1 else array.transpose(2, 0, 1)


def preprocess_files(paths: list[Path], preprocessing: dict[str, Any]) -> np.ndarray:
    """Apply a manifest's recorded preprocessing to image files: the model-ready float32 batch."""
    if preprocessing.get("kind") != "image":
        raise EdgepipeError("this model was not trained on images; `infer` needs an image model")
    size = tuple(preprocessing["size"])
    channels = int(preprocessing["channels"])
    batch = np.stack([read_image(Path(p), channels, size) for p in paths]).astype(np.float32)
    batch *= float(preprocessing["scale"])
    mean = np.asarray(preprocessing["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(preprocessing["std"], np.float32).reshape(1, -1, 1, 1)
    batch = (batch - mean) / std
    if preprocessing.get("layout") == "NTF":  # recurrent models read rows as time steps
        batch = batch[:, 0, :, :]
    return batch


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
