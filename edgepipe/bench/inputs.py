"""What `bench` measures and with which inputs: the artifacts of a run (or one model file) and raw/model batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe import limits
from edgepipe.artifacts import MANIFEST, Artifact, Manifest, read_manifest, sha256_file
from edgepipe.errors import EdgepipeError
from edgepipe.run import MODEL_SUFFIXES, RunLayout, resolve

FORMAT_BACKEND = {"torch": "torch", "onnx": "onnxruntime", "engine": "tensorrt"}


@dataclass
class Subject:
    """A run directory or a single model, with what is known of its inputs."""

    path: Path
    artifacts: list[tuple[Path, Artifact]]
    run_dir: Path | None = None
    input_shape: tuple[int, ...] | None = None  # per sample, from the training manifest
    preprocessing: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)


def _precision_from_name(name: str) -> str:
    return next((p for p in ("int8", "fp16", "bf16") if p in name), "fp32")


def _entry_for_file(path: Path, manifest: Manifest | None) -> tuple[Path, Artifact]:
    """The manifest entry of a model file, or one made up from its name when no manifest lists it."""
    fmt = MODEL_SUFFIXES[path.suffix.lower()]
    listed = manifest.find_artifact(file=path.name) if manifest is not None else None
    if listed is not None:
        return path.parent, listed
    if fmt == "torch":
        raise EdgepipeError(f"{path}: a PyTorch checkpoint needs the manifest.json its stage wrote beside it "
                            "(it holds the model spec)")
    return path.parent, Artifact(name=path.stem, file=path.name, format=fmt, precision=_precision_from_name(path.name),
                                 sha256=sha256_file(path), size_bytes=path.stat().st_size)


def _training_record(*candidates: Path) -> Manifest | None:
    """The first manifest among ``candidates`` that records the model's input shape and the dataset."""
    for directory in candidates:
        if (directory / MANIFEST).is_file():
            manifest = read_manifest(directory)
            if manifest.model is not None:
                return manifest
    return None


def resolve_subject(path: Path) -> Subject:
    """A run dir (every stage's artifacts), a stage dir, or one model file (.onnx/.pt/.engine)."""
    source = resolve(path)
    if source.kind == "file":
        directory, entry = _entry_for_file(source.path, source.manifest)
        artifacts = [(directory, entry)]
        record = _training_record(directory, RunLayout(directory.parent).origin)
        run_dir = None
    elif source.kind == "run":
        layout = RunLayout(source.directory)
        artifacts = layout.artifacts()
        record = read_manifest(layout.require_origin())
        run_dir = source.directory
    else:
        artifacts = [(source.directory, entry) for entry in source.manifest.artifacts]
        record = _training_record(source.directory, RunLayout(source.directory.parent).origin)
        run_dir = None
    if not artifacts:
        raise EdgepipeError(f"{path}: no artifacts to benchmark (the manifests list none)")
    model = (record.model if record is not None else None) or {}
    shape = tuple(model["input_shape"]) if model.get("input_shape") else None
    dataset = record.dataset if record is not None else None
    return Subject(path=Path(path), artifacts=artifacts, run_dir=run_dir, input_shape=shape,
                   preprocessing=(dataset.preprocessing if dataset is not None else None) or {},
                   recipe=(record.recipe if record is not None else None) or {})


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
    # the float batch, the raw one and a runner's copy of each: refused before any is allocated
    limits.check_allocation(3 * limits.batch_bytes(batch_size, input_shape, 4 + 1),
                            f"bench batch {batch_size} of {'x'.join(map(str, input_shape))} inputs",
                            "use a smaller --batch")
    if shape is None:
        return rng.standard_normal((batch_size, *input_shape)).astype(np.float32), None
    raw = rng.integers(0, 256, size=(batch_size, *shape), dtype=np.uint8)
    return preprocess_raw(raw, preprocessing), raw
