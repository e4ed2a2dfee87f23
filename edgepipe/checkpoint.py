"""Checkpoints that cannot execute code: tensors only (torch.load(weights_only=True)); the spec lives in JSON."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgepipe.artifacts import MANIFEST, Manifest, artifact_path, make_readable, read_manifest
from edgepipe.errors import EdgepipeError, first_line
from edgepipe.models import build_model
from edgepipe.run import MODEL_PT, resolve
from edgepipe.trust import is_import_path, require_trusted

# Rebuild steps a manifest may name without --trust-code: edgepipe's own, looked up here, never imported by name.
BUILTIN_REBUILDS = {"edgepipe.pruning.replay:rebuild": ("edgepipe.pruning.replay", "rebuild")}


def save_state(obj: dict[str, Any], path: Path) -> None:
    """Atomic torch.save of a dict of tensors/numbers (never a module object)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        make_readable(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EdgepipeError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on legacy/pickled formats are not the user's business
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, wrong format, pickled code refused by weights_only
        raise EdgepipeError(f"{path}: not a readable edgepipe checkpoint ({type(exc).__name__}: "
                            f"{first_line(exc)[:160]})") from None
    if not isinstance(state, dict):
        raise EdgepipeError(f"{path}: not an edgepipe checkpoint (holds a {type(state).__name__}, not a dict of "
                            "tensors)")
    return state


def load_model(directory: Path, filename: str = MODEL_PT) -> tuple[nn.Module, Manifest]:
    """Rebuild a stage's model from its manifest spec and load its weights. Returns (model in eval mode, manifest)."""
    manifest = read_manifest(directory)
    where = str(Path(directory) / MANIFEST)
    spec = manifest.model
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise EdgepipeError(f"{directory}: manifest has no model spec; was this made by `edgepipe train`?")
    if is_import_path(spec["name"]):
        require_trusted(spec["name"], where)
    try:
        model = build_model(spec)
    except (KeyError, ValueError) as exc:
        raise EdgepipeError(f"{where}: the model spec is incomplete or malformed ({type(exc).__name__}: "
                            f"{first_line(exc)})") from None
    rebuild = spec.get("rebuild")  # later stages (prune) record how to reshape the zoo model
    if rebuild:
        model = _rebuild(model, rebuild, where)
    state = load_state(artifact_path(directory, filename, where))
    weights = state.get("model", state)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise EdgepipeError(f"{Path(directory) / filename}: weights do not fit model '{spec['name']}' "
                            f"({first_line(exc)})") from None
    return model.eval(), manifest


def _rebuild(model: nn.Module, record: object, where: str) -> nn.Module:
    from importlib import import_module

    function = record.get("function") if isinstance(record, dict) else None
    if not isinstance(function, str):
        raise EdgepipeError(f"{where}: model.rebuild has no 'function'")
    if function in BUILTIN_REBUILDS:
        module_name, attribute = BUILTIN_REBUILDS[function]
    else:
        require_trusted(function, where)
        module_name, _, attribute = function.partition(":")
    try:
        return getattr(import_module(module_name), attribute)(model, record)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise EdgepipeError(f"{where}: model.rebuild cannot reshape the model ({type(exc).__name__}: "
                            f"{first_line(exc)})") from None


def resolve_checkpoint(path: Path) -> Path:
    """A run dir, a train/prune stage dir, or a model.pt file inside one → the stage dir holding it."""
    if Path(path).is_file() and Path(path).suffix != ".pt":
        raise EdgepipeError(f"{path}: not a checkpoint; pass a run dir, a train/ or prune/ dir, or model.pt")
    source = resolve(path, files=(".pt",))
    return source.directory if source.kind == "file" else source.model_stage()
