"""What a run directory holds, named once, and the one resolver from what the user points at to a :class:`Source`.

    RUN/
      recipe.yaml                the recipe the pipeline ran (copied once training accepted it)
      train/model.pt             the original model (tensors only; the spec is in manifest.json)
      prune/model.pt             the pruned model (channel or 2:4)
      export/model.onnx          the original model as FP32 ONNX
      export-pruned/model.onnx   the pruned model as FP32 ONNX: the deployable graph when the run was pruned
      quantize/                  model.int8.trt.onnx model.int8.cpu.onnx model.fp16.onnx trt.calib.cache
                                 calibration.ranges.json (and the QAT graphs, model.int8.*.qat.onnx)
      build-<precision>/         model.<precision>.engine
      bundle-<target>/           a deploy bundle: the same layout (export/ quantize/ prune/) plus reference.npz
      report.json report.md report.png trt.timing.cache

Every stage, command and reader asks here for a name; nothing else spells "export-pruned" or a file name.
How a stage directory is written into a run (atomically, locked) is :mod:`edgepipe.rundir`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgepipe.artifacts import MANIFEST, Artifact, Manifest, read_manifest

# The names a bundle shares with the device runtime are defined on its side and re-exported from here.
from edgepipe.device.layout import (  # noqa: F401
    BUILD,
    CALIB_CACHE,
    EXPORT,
    FP16_ONNX,
    FP32_ONNX,
    INT8_TRT_ONNX,
    LABELS_TXT,
    QUANTIZE,
    REFERENCE_NPZ,
    engine_file,
)
from edgepipe.errors import EdgepipeError

# -- stage directories --------------------------------------------------------------------------------------
TRAIN, PRUNE, EXPORT_PRUNED = "train", "prune", "export-pruned"
IMPORT = "import"  # the other origin: a model trained elsewhere (stages/importing.py), where train/ would be
ORIGINS = (TRAIN, IMPORT)  # a run has one of them: the stage that holds the original model
ONNX_ORIGIN_NEEDS_TORCH = ("{where}: the run's original is an ONNX file trained elsewhere, and this step needs its "
                           "PyTorch model (export, prune, QAT); import the weights instead (edgepipe import NAME "
                           "--weights FILE), or go on from the ONNX file with quantize, eval, bench and bundle")
BUNDLE = "bundle"  # stage names (and BUILD) (their directories are build-<precision>/ and bundle-<target>/)
# The order stages run in: breaks ties between manifests written in the same second.
PIPELINE_ORDER = (TRAIN, IMPORT, PRUNE, EXPORT, QUANTIZE, BUILD, BUNDLE)

# -- files ---------------------------------------------------------------------------------------------------
RECIPE_COPY = "recipe.yaml"
MODEL_PT = "model.pt"
# FP32_ONNX, FP16_ONNX, INT8_TRT_ONNX (symmetric QDQ: what TensorRT builds INT8 from), CALIB_CACHE: device.layout
INT8_CPU_ONNX = "model.int8.cpu.onnx"  # u8s8 QDQ: what onnxruntime's CPU kernels run fast
QAT_ONNX = {"cpu": "model.int8.cpu.qat.onnx", "trt": "model.int8.trt.qat.onnx"}
CALIB_RANGES = "calibration.ranges.json"
TIMING_CACHE = "trt.timing.cache"
REPORT_JSON, REPORT_MD, REPORT_PNG = "report.json", "report.md", "report.png"
LATENCY_LAYERS_PNG = "latency_layers.png"  # prune/: per-layer latency before vs after pruning
TASK_PNG = "report-task.png"  # the task's own picture: confusion matrix + ROC, or PR curves + per-class AP
# A bundle's own files, beside its export/ quantize/ prune/ stages.
# (REFERENCE_NPZ and LABELS_TXT: device.layout)
BUNDLE_README = "README.md"
# The device runtime a bundle carries (edgepipe/device/): the launcher users run and the package beside it.
DEVICE_LAUNCHER, DEVICE_PACKAGE = "edgepipe_device.py", "edgepipe_device"

# -- artifact names (what manifests call them; eval and bench rows show them) ---------------------------------
ORIGINAL = "original"
EXPORT_NAMES = {EXPORT: "onnx-fp32", EXPORT_PRUNED: "pruned-onnx-fp32"}
MODEL_SUFFIXES = {".onnx": "onnx", ".engine": "engine", ".plan": "engine", ".pt": "torch"}


def build_dir_name(precision: str) -> str:
    return f"{BUILD}-{precision}"


def bundle_dir_name(target: str) -> str:
    return f"{BUNDLE}-{target}"


def export_dir_for(model_stage: Path) -> Path:
    """Where a train/ or prune/ stage's ONNX goes: export/ or export-pruned/ beside it (`.` is a real directory)."""
    stage = Path(model_stage).absolute()
    return stage.parent / (EXPORT_PRUNED if stage.name.startswith(PRUNE) else EXPORT)


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory (or of a bundle, which mimics one)."""

    root: Path

    @property
    def train(self) -> Path:
        return self.root / TRAIN

    @property
    def imported(self) -> Path:
        return self.root / IMPORT

    @property
    def origin(self) -> Path:
        """The stage holding the original model: train/, or import/ for a model trained elsewhere."""
        return self.imported if self.has(self.imported) and not self.has(self.train) else self.train

    def require_origin(self, *, torch: bool = False) -> Path:
        """The origin stage, or one line when the run has none; ``torch``: the step needs the PyTorch model, which
        a run started from an ONNX file does not have."""
        origin = self.origin
        if not self.root.exists():
            raise EdgepipeError(f"{self.root} does not exist; pass a run directory (`edgepipe pipeline` or "
                                "`edgepipe import` makes one)")
        if not self.has(origin) and (self.root / MANIFEST).is_file():
            read_manifest(self.root)  # a stage or bundle directory: its own manifest's problem is the one to name
        if not self.has(origin):
            raise EdgepipeError(f"{self.root}: no train/{MANIFEST} or import/{MANIFEST}; run `edgepipe pipeline`, "
                                "`edgepipe train` or `edgepipe import` first")
        if torch and origin.name == IMPORT and read_manifest(origin).find_artifact(fmt="torch") is None:
            raise EdgepipeError(ONNX_ORIGIN_NEEDS_TORCH.format(where=self.root))
        return origin

    @property
    def prune(self) -> Path:
        return self.root / PRUNE

    @property
    def export(self) -> Path:
        return self.root / EXPORT

    @property
    def export_pruned(self) -> Path:
        return self.root / EXPORT_PRUNED

    @property
    def quantize(self) -> Path:
        return self.root / QUANTIZE

    @property
    def recipe_copy(self) -> Path:
        return self.root / RECIPE_COPY

    def bundle(self, target: str) -> Path:
        return self.root / bundle_dir_name(target)

    def has(self, stage_directory: Path) -> bool:
        return (stage_directory / MANIFEST).is_file()

    def exports(self) -> list[Path]:
        """The stages holding the FP32 ONNX graph, the deployable one (the pruned model's, when there is one) first;
        a run started from an ONNX file trained elsewhere has its import/ stage (it needs no export)."""
        found = [d for d in (self.export_pruned, self.export) if self.has(d)]
        if not found and self.has(self.imported) and read_manifest(self.imported).find_artifact(fmt="onnx"):
            found.append(self.imported)
        return found

    def stage_dirs(self) -> list[Path]:
        """Stage directories of the run, in the order they were made."""
        found = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".") and self.has(p)]
        order = {stage: rank for rank, stage in enumerate(PIPELINE_ORDER)}

        def key(directory: Path) -> tuple[str, int, str]:
            manifest = read_manifest(directory)
            # created has one-second resolution: break ties by the pipeline's stage order, then by name.
            return manifest.created or "", order.get(manifest.stage, len(order)), directory.name

        return sorted(found, key=key)

    def artifacts(self) -> list[tuple[Path, Artifact]]:
        """(stage dir, artifact entry) for every artifact of every stage, the original model first."""
        found = [(directory, entry) for directory in self.stage_dirs()
                 for entry in read_manifest(directory).artifacts]
        found.sort(key=lambda item: item[1].name != ORIGINAL)
        return found


SourceKind = Literal["run", "stage", "bundle", "file"]


@dataclass(frozen=True)
class Source:
    """What the user pointed at: a run directory, a stage directory, a deploy bundle, or one model file."""

    path: Path
    kind: SourceKind
    directory: Path  # the run/stage/bundle directory; a file's own directory
    manifest: Manifest | None  # the stage's or bundle's manifest; for a file, its directory's (when any)

    @property
    def stage(self) -> str | None:
        return self.manifest.stage if self.manifest is not None else None

    @property
    def run(self) -> RunLayout | None:
        """The run this source belongs to: itself, or the run directory holding its stage (None for a file alone)."""
        if self.kind in ("run", "bundle"):
            return RunLayout(self.directory)
        parent = self.directory.absolute().parent  # `edgepipe ... .` inside a stage directory
        return RunLayout(parent) if is_run_root(parent) else None

    def stage_dir(self, stage: str, *, hint: str = "") -> Path:
        """The directory of ``stage``: this stage itself, or that stage of this run; one line when missing."""
        if self.kind in ("stage", "file") and self.stage == stage:
            return self.directory
        if self.kind in ("run", "bundle") and (self.directory / stage / MANIFEST).is_file():
            return self.directory / stage
        raise EdgepipeError(f"no '{stage}' stage found in {self.path} (expected {self.directory / stage / MANIFEST})"
                            + (f"; {hint}" if hint else ""))

    def model_stage(self) -> Path:
        """The stage holding a PyTorch model: a run's prune/ (else its origin), or the stage given. A run whose
        original is an ONNX file has none: one line saying what works instead."""
        directory = None
        if self.kind in ("stage", "file") and self.stage in (TRAIN, IMPORT, PRUNE):
            directory = self.directory
        elif self.kind == "run":
            directory = next((self.directory / stage for stage in (PRUNE, TRAIN, IMPORT)
                              if (self.directory / stage / MANIFEST).is_file()), None)
        if directory is None:
            raise EdgepipeError(f"{self.path}: no trained model found (expected a run dir, a train/ or prune/ dir, "
                                "or model.pt)")
        manifest = self.manifest if self.kind in ("stage", "file") else read_manifest(directory)
        if manifest.stage == IMPORT and manifest.find_artifact(fmt="torch") is None:
            raise EdgepipeError(ONNX_ORIGIN_NEEDS_TORCH.format(where=self.path))
        return directory


def is_run_root(path: Path) -> bool:
    """A run directory: it holds an origin stage (train/ or import/)."""
    return any((Path(path) / origin / MANIFEST).is_file() for origin in ORIGINS)


def resolve(path: Path, *, files: tuple[str, ...] = tuple(MODEL_SUFFIXES)) -> Source:
    """Turn a path the user gave into a Source; ``files`` are the model file suffixes this command accepts."""
    path = Path(path)
    if not path.exists():
        raise EdgepipeError(f"{path} does not exist")
    if path.is_file():
        if path.suffix.lower() not in files:
            raise EdgepipeError(f"{path} is not a model file ({', '.join(files)}) nor a run, stage or bundle "
                                "directory")
        manifest = read_manifest(path.parent) if (path.parent / MANIFEST).is_file() else None
        return Source(path, "file", path.parent, manifest)
    if (path / MANIFEST).is_file():
        manifest = read_manifest(path)
        return Source(path, "bundle" if manifest.stage == BUNDLE else "stage", path, manifest)
    if is_run_root(path) or any((child / MANIFEST).is_file() for child in path.iterdir()
                                                  if child.is_dir()):
        return Source(path, "run", path, None)
    raise EdgepipeError(f"{path}: not a run directory (no train/{MANIFEST}), stage directory or bundle "
                        f"(no {MANIFEST})")


def stage_dir(path: Path, stage: str) -> Path:
    """A run directory (containing ``stage/``) or the stage directory itself → that stage's directory."""
    return resolve(path, files=()).stage_dir(stage)
