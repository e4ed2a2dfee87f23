"""Open the right runner for an artifact recorded in a manifest (format -> backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepipe.errors import EdgepipeError
from edgepipe.runners.base import Runner


def open_runner(directory: Path, artifact: dict[str, Any], threads: int | None = None,
                device: str = "cpu") -> Runner:
    """A not-yet-opened runner for ``artifact`` (an entry of a manifest's ``artifacts`` list)."""
    path = Path(directory) / artifact["file"]
    fmt = artifact["format"]
    if fmt == "torch":
        from edgepipe.runners.torch import TorchRunner

        return TorchRunner(Path(directory), artifact["file"], device=device, threads=threads)
    if fmt == "onnx":
        from edgepipe.runners.onnxruntime import OrtRunner

        return OrtRunner(path, threads=threads)
    if fmt == "engine":
        from edgepipe.runners.tensorrt import TrtRunner

        return TrtRunner(path)
    raise EdgepipeError(f"{path}: unknown artifact format '{fmt}' in {directory}/manifest.json")
