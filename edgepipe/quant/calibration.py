"""Calibration sets: a definition file under calibration/ (split, sample count, seed) or a folder of images.

A calibration set is hashed by content (the exact float32 batch the calibrator sees, plus its
definition), so every cache made from it is keyed by what it really contains. The test split is
never used for calibration: it is what the accuracy claims are measured on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.errors import EdgepipeError

ALLOWED_SPLITS = ("train", "val")
DEFINITION_KEYS = {"name", "description", "split", "samples", "seed"}
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CalibrationSet:
    name: str
    data: np.ndarray  # float32, model-ready, (N, *input_shape)
    definition: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256(json.dumps(self.definition, sort_keys=True).encode())
        digest.update(str(self.data.shape).encode())
        digest.update(np.ascontiguousarray(self.data, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.data)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "samples": len(self), "sha256": self.sha256, **self.definition}


def resolve_calibration_path(spec: str | Path) -> Path:
    """A path as given; else relative to the repository (calibration/NAME.yaml); else calibration/<spec>.yaml."""
    path = Path(spec)
    candidates = [path]
    if not path.is_absolute():
        candidates += [REPO_ROOT / path, REPO_ROOT / "calibration" / path, REPO_ROOT / "calibration" / f"{spec}.yaml"]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    available = sorted(p.name for p in (REPO_ROOT / "calibration").glob("*.yaml"))
    raise EdgepipeError(f"calibration set {spec!r} not found (a calibration/*.yaml file or an image folder); "
                        f"available: {', '.join(available) or 'none'}")


def read_definition(path: Path) -> dict[str, Any]:
    import yaml

    try:
        definition = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EdgepipeError(f"{path}: not a valid YAML calibration set ({str(exc).splitlines()[0]})") from None
    if not isinstance(definition, dict):
        raise EdgepipeError(f"{path}: a calibration set must be a YAML mapping with split, samples and seed")
    unknown = sorted(set(definition) - DEFINITION_KEYS)
    if unknown:
        raise EdgepipeError(f"{path}: unknown key '{unknown[0]}'; allowed keys: {', '.join(sorted(DEFINITION_KEYS))}")
    split = definition.get("split")
    if split not in ALLOWED_SPLITS:
        raise EdgepipeError(f"{path}: split {split!r} is not allowed; calibrate on train or val, never on test "
                            "(the test split is what accuracy is measured on)")
    samples, seed = definition.get("samples"), definition.get("seed", 0)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0:
        raise EdgepipeError(f"{path}: samples must be a positive integer (got {samples!r})")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise EdgepipeError(f"{path}: seed must be an integer (got {seed!r})")
    return {"split": split, "samples": samples, "seed": seed}


def load_calibration_set(spec: str | Path, *, dataset_loader: Callable[[], Any] | None,
                         preprocessing: dict[str, Any] | None, input_shape: tuple[int | None, ...]) -> CalibrationSet:
    """Materialize ``spec`` (definition file or image folder) and check it fits the model input."""
    path = resolve_calibration_path(spec)
    if path.is_dir():
        data, definition = _from_folder(path, preprocessing)
        name = path.name
    else:
        definition = read_definition(path)
        if dataset_loader is None:
            raise EdgepipeError(f"{path} draws from the model's dataset, but the model has no edgepipe manifest; "
                                "pass a run directory or a folder of images with --calib")
        split = getattr(dataset_loader(), definition["split"])
        if len(split) == 0:
            raise EdgepipeError(f"{path}: the {definition['split']} split is empty; nothing to calibrate on")
        count = min(definition["samples"], len(split))
        rng = np.random.default_rng(definition["seed"])
        index = np.sort(rng.choice(len(split), size=count, replace=False))
        data = split.take(count, index)
        definition = {**definition, "drawn": count}
        name = path.stem
    calibration_set = CalibrationSet(name, data, {"source": str(path), **definition})
    check_calibration_data(calibration_set, input_shape, where=str(path))
    return calibration_set


def _from_folder(folder: Path, preprocessing: dict[str, Any] | None) -> tuple[np.ndarray, dict[str, Any]]:
    """A folder of images at any size, through the model's own eval view (the recorded resize, centre crop and
    normalization that training evaluated on, `infer` and the bundle apply): ranges are measured on what the
    model will see in deployment. Decoded one file at a time into uint8, converted once at the end."""
    from edgepipe.data.images import list_images, read_image, to_model_input

    files = list_images(folder)
    if not files:
        raise EdgepipeError(f"calibration folder {folder} holds no images (.png, .jpg, ...); add a few hundred "
                            "representative inputs")
    if not preprocessing or preprocessing.get("kind") != "image":
        raise EdgepipeError(f"calibration folder {folder}: the model's manifest records no image preprocessing; "
                            "use a calibration/*.yaml set drawn from its dataset instead")
    digest = hashlib.sha256()
    pixels = []
    for file in files:
        digest.update(file.relative_to(folder).as_posix().encode())
        digest.update(file.read_bytes())
        pixels.append(read_image(file, preprocessing))
    view = {"size": list(preprocessing["size"]), **({"resize": preprocessing["resize"]}
                                                    if preprocessing.get("resize") else {})}
    return to_model_input(np.stack(pixels), preprocessing), {"images": len(files), "files_sha256": digest.hexdigest(),
                                                             "eval_view": view}


def check_calibration_data(calibration_set: CalibrationSet, input_shape: tuple[int | None, ...], where: str) -> None:
    data = calibration_set.data
    if len(data) == 0:
        raise EdgepipeError(f"calibration set {where} is empty; it needs at least one sample")
    expected = tuple(input_shape[1:])
    if tuple(data.shape[1:]) != expected and not _matches(data.shape[1:], expected):
        shown = tuple("N" if d is None else d for d in input_shape)
        raise EdgepipeError(f"calibration set {where}: samples have shape {tuple(data.shape[1:])}, the model input is "
                            f"{shown}; resize the images or pick the model's own calibration set")
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argwhere(bad.reshape(len(data), -1).any(1))[0][0])
        raise EdgepipeError(f"calibration set {where}: sample {first} holds NaN or Inf ({int(bad.sum())} values); "
                            "fix the data, calibration ranges would be meaningless")


def _matches(actual: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(actual) == len(expected) and all(e is None or e == a for a, e in zip(actual, expected, strict=True))


class ArrayDataReader:
    """onnxruntime's CalibrationDataReader over an in-memory array: one feed per call, None at the end."""

    def __init__(self, data: np.ndarray, input_name: str, batch_size: int = 64) -> None:
        self.data, self.input_name, self.batch_size = data, input_name, batch_size
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.data):
            return None
        batch = self.data[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)
