"""What `bench` measures and with which inputs: the artifacts of a run (or one model file) and raw/model batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import MANIFEST, read_manifest, stage_dir
from edgepipe.errors import EdgepipeError

FORMAT_BACKEND = {"torch": "torch", "onnx": "onnxruntime", "engine": "tensorrt"}
_SUFFIX_FORMAT = {".onnx": "onnx", ".pt": "torch", ".engine": "engine", ".plan": "engine"}


@dataclass
class Subject:
    """A run directory or a single model, with what is known of its inputs."""

    path: Path
    artifacts: list[tuple[Path, dict[str, Any]]]
    run_dir: Path | None = None
    input_shape: tuple[int, ...] | None = None  # per sample, from the training manifest
    preprocessing: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)


def _precision_from_name(name: str) -> str:
    return next((p for p in ("int8", "fp16", "bf16") if p in name), "fp32")


def _entry_for_file(path: Path) -> tuple[Path, dict[str, Any]]:
    """The manifest entry of a model file, or one made up from its name when no manifest lists it."""
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise EdgepipeError(f"{path}: not a model file bench knows (.onnx, .pt, .engine); "
                            "or pass a run directory")
    if (path.parent / MANIFEST).is_file():
        for entry in read_manifest(path.parent).get("artifacts", []):
            if entry["file"] == path.name:
                return path.parent, entry
    if fmt == "torch":
        raise EdgepipeError(f"{path}: a PyTorch checkpoint needs the manifest.json its stage wrote beside it "
                            "(it holds the model spec)")
    entry = {"name": path.stem, "file": path.name, "format": fmt, "precision": _precision_from_name(path.name),
             "size_bytes": path.stat().st_size}
    return path.parent, entry


def _training_record(*candidates: Path) -> dict[str, Any]:
    """The first manifest among ``candidates`` that records the model's input shape and the dataset."""
    for directory in candidates:
        if (directory / MANIFEST).is_file():
            manifest = read_manifest(directory)
            if "model" in manifest:
                return manifest
    return {}


def resolve_subject(path: Path) -> Subject:
    """A run dir (every stage's artifacts), a stage dir, or one model file (.onnx/.pt/.engine)."""
    path = Path(path)
    if not path.exists():
        raise EdgepipeError(f"{path} does not exist; pass a run directory or a model file (.onnx, .pt, .engine)")
    if path.is_file():
        directory, entry = _entry_for_file(path)
        artifacts = [(directory, entry)]
        record = _training_record(directory, directory.parent / "train")
        run_dir = None
    elif (path / "train" / MANIFEST).is_file():
        from edgepipe.stages.evaluate import collect_artifacts

        artifacts = collect_artifacts(path)
        record = read_manifest(stage_dir(path, "train"))
        run_dir = path
    elif (path / MANIFEST).is_file():
        artifacts = [(path, entry) for entry in read_manifest(path).get("artifacts", [])]
        record = _training_record(path, path.parent / "train")
        run_dir = None
    else:
        raise EdgepipeError(f"{path}: neither a run directory (no train/{MANIFEST}) nor a stage directory "
                            f"(no {MANIFEST})")
    if not artifacts:
        raise EdgepipeError(f"{path}: no artifacts to benchmark (the manifests list none)")
    model = record.get("model") or {}
    shape = tuple(model["input_shape"]) if model.get("input_shape") else None
    return Subject(path=path, artifacts=artifacts, run_dir=run_dir, input_shape=shape,
                   preprocessing=(record.get("dataset") or {}).get("preprocessing") or {},
                   recipe=record.get("recipe") or {})


def raw_shape(preprocessing: dict[str, Any], input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Per-sample shape of the raw uint8 input the preprocessing starts from (None: not an image model)."""
    if preprocessing.get("kind") != "image":
        return None
    shape = (int(preprocessing["channels"]), *(int(s) for s in preprocessing["size"]))
    expected = shape[1:] if preprocessing.get("layout") == "NTF" else shape
    return shape if tuple(expected) == tuple(input_shape) else None


def preprocess_raw(raw: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """Decoded uint8 NCHW images → the model's float32 input: the steps of data.images.preprocess_files
    after decoding (scale, per-channel mean/std, NTF layout for recurrent models)."""
    batch = raw.astype(np.float32) * np.float32(preprocessing["scale"])
    mean = np.asarray(preprocessing["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(preprocessing["std"], np.float32).reshape(1, -1, 1, 1)
    batch = (batch - mean) / std
    if preprocessing.get("layout") == "NTF":
        batch = batch[:, 0, :, :]
    return batch


def make_batches(batch_size: int, input_shape: tuple[int, ...], preprocessing: dict[str, Any],
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """(model-ready float32 batch, raw uint8 batch or None). Random pixels: these models' speed does not
    depend on values; the model batch is the preprocessed raw batch when there is one."""
    rng = np.random.default_rng(seed)
    shape = raw_shape(preprocessing, input_shape)
    if shape is None:
        return rng.standard_normal((batch_size, *input_shape)).astype(np.float32), None
    raw = rng.integers(0, 256, size=(batch_size, *shape), dtype=np.uint8)
    return preprocess_raw(raw, preprocessing), raw
