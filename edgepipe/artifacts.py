"""Artifact directories: manifest.json, content hashes, atomic file writes, paths kept inside their stage.

A run directory holds one sub-directory per stage (``train/``, ``export/``, ...), each with a manifest;
:mod:`edgepipe.run` names them. How a whole stage directory is written into a run (atomically, locked,
never over a user's files) is :mod:`edgepipe.rundir`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgepipe import __version__, diskspace, limits
from edgepipe.device.layout import MANIFEST  # noqa: F401 - re-exported: the one name, the device runtime's
from edgepipe.errors import EdgepipeError

_TRACKED_LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxscript", "torch-pruning", "numpy", "tensorrt",
                      "openvino")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Stable hash of a JSON-able value (configs, lists of parent hashes)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"edgepipe": __version__, "python": platform.python_version()}
    for name in _TRACKED_LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_readable(path: Path) -> None:
    """Ordinary permissions (what umask gives a new file or directory), not mkstemp/mkdtemp's owner-only 0600/0700.

    A bundle copied to a Jetson must be readable by the service account that runs it.
    """
    path = Path(path)
    mode = 0o777 if path.is_dir() else 0o666
    os.chmod(path, mode & ~_umask())


def write_bytes_atomic(path: Path, data: Any) -> None:
    """Write bytes to a temp file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The .tmp- name is what recover() removes after a kill.
    data = memoryview(data)
    with diskspace.writing(path.parent, path.name, needed=data.nbytes):  # a full disk: one line, file left as it was
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            make_readable(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to a temp file in the same directory, then rename: readers never see half a file.

    Keys are sorted, so the same content always gives the same bytes (and the same hashes in a bundle).
    """
    write_bytes_atomic(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path, what: str = "file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise EdgepipeError(f"{what} not found: {path}")
    try:
        return limits.read_json(path, what)  # too large or nested too deeply: one line naming the file
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgepipeError(f"{what} {path} is not valid JSON ({exc}); delete it and rerun the stage") from None


def artifact_path(directory: Path, relative: Any, where: str | None = None) -> Path:
    """``directory / relative``, refused unless it stays inside ``directory`` once symlinks are resolved.

    A manifest is data from whoever made the run: '../../secret', an absolute path or a symlink out of the
    run must never be read, evaluated or shipped in a bundle.
    """
    directory = Path(directory)
    where = where or str(directory / MANIFEST)
    if not isinstance(relative, str) or not relative or "\0" in relative or Path(relative).is_absolute():
        raise EdgepipeError(f"{where}: artifact file {relative!r} is not a path inside {directory}; refusing it")
    root = directory.resolve()
    candidate = directory / relative
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise EdgepipeError(f"{where}: artifact file '{relative}' points outside {directory} (to {resolved}); "
                            "refusing to read it")
    return candidate


class Artifact(BaseModel):
    """One file a stage made that eval, bench and infer can run (an entry of a manifest's ``artifacts``)."""

    model_config = ConfigDict(extra="allow")  # stage-specific facts (an engine's settings, a QDQ track)

    name: str
    file: str
    format: str  # "torch" | "onnx" | "engine"
    sha256: str
    precision: str = "fp32"
    size_bytes: int = 0


class DatasetRecord(BaseModel):
    """How a model's data was made: enough to reload the exact splits and preprocess a raw image the same way."""

    model_config = ConfigDict(extra="allow")

    config: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str | None = None
    labels: list[str] = Field(default_factory=list)
    preprocessing: dict[str, Any] | None = None
    sizes: dict[str, int] | None = None  # train/val/test split sizes
    name: str | None = None  # a bundle's record: the dataset's name and how many test samples it ships
    samples: int | None = None


class BundleFile(BaseModel):
    path: str
    sha256: str
    size_bytes: int = 0


class Manifest(BaseModel):
    """A stage directory's manifest.json. Keys a stage adds of its own (``onnx``, ``calibration_cache``, a
    bundle's ``target``...) are kept as extra fields; ``model_dump`` writes back what was read."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    stage: str
    created: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    parents: dict[str, str] = Field(default_factory=dict)  # a parent file's role -> its sha256
    inputs_key: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] | None = None  # the model spec (zoo name, params, input shape, rebuild record)
    dataset: DatasetRecord | None = None
    recipe: dict[str, Any] | None = None
    source: dict[str, Any] | None = None  # the stage this one was made from: {"stage", "dir"}
    files: list[BundleFile] | None = None  # a bundle's every file with its hash

    def find_artifact(self, *, name: str | None = None, fmt: str | None = None,
                      file: str | None = None) -> Artifact | None:
        """The first artifact with that name / format / file (any of them left out matches all)."""
        return next((a for a in self.artifacts if (name is None or a.name == name)
                     and (fmt is None or a.format == fmt) and (file is None or a.file == file)), None)

    def carry_from(self, source: Manifest, source_dir: Path) -> None:
        """What a stage made from another keeps of it: the model spec, the dataset record, the recipe, and where
        it came from (one place, so no stage forgets the dataset record that eval and infer need)."""
        self.model, self.dataset = source.model, source.dataset
        if source.recipe is not None:
            self.recipe = source.recipe
        self.source = {"stage": source.stage, "dir": str(source_dir)}

    def extra(self, key: str, default: Any = None) -> Any:
        """A stage-specific key (``onnx``, ``calibration_cache``, ``sparsity``...), ``default`` when absent."""
        return (self.__pydantic_extra__ or {}).get(key, default)

    def to_json(self) -> dict[str, Any]:
        """What manifest.json holds. Python mode: a numpy number in a stage's metrics is written by
        write_json_atomic (as it always was), not refused by pydantic's JSON serializer."""
        return self.model_dump(mode="python", exclude_unset=True, warnings=False)


_KINDS = {"list_type": "a list", "dict_type": "an object", "model_type": "an object", "string_type": "a string",
          "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer"}


def _first_error(error: ValidationError) -> str:
    """pydantic's first complaint as one line: "artifacts[0] has no 'sha256'", "'artifacts' must be a list"."""
    first = error.errors()[0]
    parts = [f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]]
    where = "".join(parts).lstrip(".")
    if first["type"] == "missing":
        parent = "".join(parts[:-1]).lstrip(".") or "the manifest"
        return f"{parent} has no '{first['loc'][-1]}'"
    kind = _KINDS.get(first["type"])
    return f"'{where}' must be {kind}" if kind else f"'{where}': {first['msg']}"


def _check_manifest(path: Path, value: Any) -> Manifest:
    if not isinstance(value, dict) or not isinstance(value.get("stage"), str):
        raise EdgepipeError(f"{path} is not an edgepipe manifest (no 'stage' key)")
    try:
        manifest = Manifest.model_validate(value)
    except ValidationError as exc:
        raise EdgepipeError(f"{path}: {_first_error(exc)}; the manifest was edited or damaged, rerun the stage") \
            from None
    for index, entry in enumerate(manifest.artifacts):
        artifact_path(path.parent, entry.file, f"{path}: artifacts[{index}]")
    for index, bundled in enumerate(manifest.files or []):
        artifact_path(path.parent, bundled.path, f"{path}: files[{index}]")
    return manifest


def is_stage_dir(path: Path, stage: str) -> bool:
    """True when ``path`` is a directory holding a manifest.json of ``stage`` (a directory edgepipe made)."""
    manifest = Path(path) / MANIFEST
    if not Path(path).is_dir() or not manifest.is_file():
        return False
    try:
        value = json.loads(manifest.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(value, dict) and value.get("stage") == stage


def new_manifest(stage: str, config: dict[str, Any], parents: dict[str, str] | None = None) -> Manifest:
    """The common manifest header. ``parents`` maps a parent file's role to its sha256."""
    parents = parents or {}
    return Manifest(
        stage=stage,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        config=config,
        parents=parents,
        # What the pipeline compares to decide a stage is already done.
        inputs_key=sha256_json({"stage": stage, "config": config, "parents": parents}),
        versions=library_versions(),
        artifacts=[],
        metrics={},
    )


def add_artifact(manifest: Manifest, directory: Path, filename: str, *, name: str, fmt: str, precision: str,
                 **extra: Any) -> Artifact:
    """Record a file of ``directory`` as an evaluable artifact (eval/bench find artifacts this way)."""
    path = Path(directory) / filename
    entry = Artifact(name=name, file=filename, format=fmt, precision=precision, sha256=sha256_file(path),
                     size_bytes=path.stat().st_size, **extra)
    manifest.artifacts.append(entry)
    return entry


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = Path(directory) / MANIFEST
    write_json_atomic(path, manifest.to_json())
    return path


def read_manifest(directory: Path) -> Manifest:
    directory = Path(directory)
    return _check_manifest(directory / MANIFEST, read_json(directory / MANIFEST, what="manifest"))


def verify_artifacts(directory: Path, manifest: Manifest) -> bool:
    """True when every artifact file the manifest lists exists with the recorded hash."""
    for entry in manifest.artifacts:
        path = artifact_path(directory, entry.file)
        if not path.is_file() or sha256_file(path) != entry.sha256:
            return False
    return True


def is_up_to_date(out: Path, manifest: Manifest) -> bool:
    """True when ``out`` already holds a complete artifact made from the same inputs (so a stage can skip)."""
    out = Path(out)
    if not (out / MANIFEST).is_file():
        return False
    try:
        existing = read_manifest(out)
    except EdgepipeError:
        return False  # a corrupt manifest means: make the stage again
    return existing.inputs_key == manifest.inputs_key and verify_artifacts(out, existing)
