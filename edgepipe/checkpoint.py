"""Checkpoints that cannot execute code: tensors only (torch.load(weights_only=True)); the spec lives in JSON."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgepipe.artifacts import read_manifest, stage_dir
from edgepipe.errors import EdgepipeError
from edgepipe.models import build_model


def save_state(obj: dict[str, Any], path: Path) -> None:
    """Atomic torch.save of a dict of tensors/numbers (never a module object)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EdgepipeError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, wrong format, pickled code refused by weights_only
        raise EdgepipeError(f"{path}: not a readable edgepipe checkpoint ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:160]})") from None


def load_model(directory: Path, filename: str = "model.pt") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a stage's model from its manifest spec and load its weights. Returns (model in eval mode, manifest)."""
    manifest = read_manifest(directory)
    spec = manifest.get("model")
    if not spec:
        raise EdgepipeError(f"{directory}: manifest has no model spec; was this made by `edgepipe train`?")
    model = build_model(spec)
    rebuild = spec.get("rebuild")  # later stages (prune) record how to reshape the zoo model
    if rebuild:
        from importlib import import_module

        module_name, _, function = rebuild["function"].partition(":")
        model = getattr(import_module(module_name), function)(model, rebuild)
    state = load_state(Path(directory) / filename)
    weights = state.get("model", state)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise EdgepipeError(f"{Path(directory) / filename}: weights do not fit model '{spec['name']}' "
                            f"({str(exc).splitlines()[0]})") from None
    return model.eval(), manifest


def resolve_checkpoint(path: Path) -> Path:
    """A run dir, a train/prune stage dir, or a model.pt file inside one → the stage dir holding it."""
    path = Path(path)
    if not path.exists():
        raise EdgepipeError(f"{path} does not exist")
    if path.is_file():
        if path.suffix != ".pt":
            raise EdgepipeError(f"{path}: not a checkpoint; pass a run dir, a train/ or prune/ dir, or model.pt")
        return path.parent
    for stage in ("prune", "train"):
        try:
            return stage_dir(path, stage)
        except EdgepipeError:
            continue
    raise EdgepipeError(f"{path}: no trained model found (expected a run dir, a train/ or prune/ dir, or model.pt)")
