"""Reading a deploy bundle: its manifest with every listed file checked, and its stored evaluation set.

No torch and no onnx here: eval, infer and build read bundles on a device that has neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from edgepipe.artifacts import Manifest, is_stage_dir, read_manifest, sha256_file
from edgepipe.errors import EdgepipeError
from edgepipe.run import BUNDLE


@dataclass(frozen=True)
class Reference:
    """A bundle's evaluation set and the original model's outputs on it (what `eval` compares against)."""

    x: np.ndarray
    targets: np.ndarray  # what the task scores against: labels, or the inputs themselves for reconstruction
    outputs: np.ndarray  # the original PyTorch model's
    manifest: Manifest


def is_bundle(path: Path) -> bool:
    return is_stage_dir(path, BUNDLE)


class BundleFacts(BaseModel):
    """What a bundle's manifest.json says beside a stage manifest's common fields: written by `edgepipe bundle`
    from this model and read back as it (the device runtime reads the same keys as JSON)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    recipe_name: str | None = None
    target: dict[str, Any] = Field(default_factory=dict)  # the profile: name, gpu, sm, precisions, TensorRT range
    precisions: list[str] = Field(default_factory=list)  # what the device may build, best first
    # the budget eval gates with on the device (bundles made before its rename: max_accuracy_drop)
    max_drop: float | None = Field(default=None, validation_alias=AliasChoices("max_drop", "max_accuracy_drop"))
    original: dict[str, Any] = Field(default_factory=dict)  # the original's score on the stored samples, its file
    excluded: list[dict[str, Any]] = Field(default_factory=list)  # quantize files the target cannot run
    preflight: Any = None
    trtexec: Any = None

    @classmethod
    def of(cls, manifest: Manifest) -> BundleFacts:
        return cls.model_validate(manifest.model_extra or {})

    def write_into(self, manifest: Manifest) -> None:
        """These facts become ``manifest``'s own keys (as bundles have always been written)."""
        for key, value in self.model_dump(mode="python").items():
            setattr(manifest, key, value)


def read_bundle(bundle: Path) -> Manifest:
    """The bundle manifest, after checking every file it lists is present and unchanged (named when not)."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    if manifest.stage != BUNDLE:
        raise EdgepipeError(f"{bundle} is a '{manifest.stage}' stage, not a deploy bundle "
                            "(make one with `edgepipe bundle RUN --target PROFILE --out DIR`)")
    for entry in manifest.files or []:
        path = bundle / entry.path
        if not path.is_file():
            raise EdgepipeError(f"bundle {bundle} is missing {entry.path} (listed in its manifest.json); "
                                "copy the whole bundle directory again")
        if path.stat().st_size != entry.size_bytes or sha256_file(path) != entry.sha256:
            raise EdgepipeError(f"bundle {bundle}: {entry.path} differs from the file bundled (sha256 mismatch); "
                                "copy the bundle again or rerun `edgepipe bundle`")
    return manifest


def load_reference(bundle: Path) -> Reference:
    """The stored evaluation set and reference outputs, read as the device runtime reads them (one reader; np.load
    without pickle: data only), after every bundled file is checked."""
    from edgepipe.device.bundle import Bundle

    bundle = Path(bundle)
    manifest = read_bundle(bundle)
    x, targets, outputs = Bundle(bundle).reference()
    return Reference(x, targets, outputs, manifest)


def check_bundle_target(source: Path, target: str | None) -> str | None:
    """For `build` on a bundle: refuse another target than the bundle's; None means "use the bundle's".

    Returns the target to build for (the bundle's when none is given); not a bundle → ``target`` unchanged.
    """
    source = Path(source)
    if not source.is_dir() or not is_bundle(source):
        return target
    manifest = read_bundle(source)
    bundled = BundleFacts.of(manifest).target["name"]
    if target is not None and target != bundled:
        from edgepipe.targets import get_target

        get_target(target)  # an unknown name lists the known ones first
        raise EdgepipeError(f"{source} was bundled for {bundled}, not {target}: its ONNX files were checked for "
                            f"{bundled} only; rerun `edgepipe bundle RUN --target {target} --out DIR`")
    return bundled
