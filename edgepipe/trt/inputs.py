"""Which ONNX (and which INT8 mode) to hand TensorRT, per TensorRT version and precision.

- TensorRT >= 11 removed the precision builder flags and implicit INT8 calibration: strongly typed
  networks only, so the precision must live in the ONNX (FP16 graph, QDQ INT8 graph).
- TensorRT 9/10: weakly typed networks with the FP16/INT8 builder flags still work; INT8 from the QDQ
  graph (explicit quantization), or from the calibration cache when no QDQ graph exists.
- TensorRT 8.x (old Jetsons): builder flags; INT8 through the implicit calibrator serving
  trt.calib.cache (what JetPack 4/5 are known to handle), else the QDQ graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgepipe.artifacts import MANIFEST, Manifest, artifact_path, read_manifest, sha256_file
from edgepipe.device import planning as device
from edgepipe.errors import EdgepipeError
from edgepipe.run import CALIB_CACHE, FP16_ONNX, FP32_ONNX, INT8_CPU_ONNX, INT8_TRT_ONNX, RunLayout


@dataclass(frozen=True)
class SourceFiles:
    """The build inputs found in a run directory, a deploy bundle, or a single ONNX file."""

    source: Path
    run_dir: Path | None = None
    fp32_onnx: Path | None = None
    fp16_onnx: Path | None = None
    int8_trt_onnx: Path | None = None
    int8_cpu_onnx: Path | None = None
    calibration_cache: Path | None = None
    sparse_2_4: bool = False
    quantize_manifest: Manifest | None = field(default=None, compare=False)

    def cpu_fallback(self) -> Path | None:
        """The artifact onnxruntime runs on the CPU when TensorRT cannot: INT8 CPU graph, else FP32."""
        return self.int8_cpu_onnx or self.fp32_onnx


@dataclass(frozen=True)
class BuildPlan:
    onnx: Path
    strongly_typed: bool
    builder_flags: tuple[str, ...]  # trt.BuilderFlag member names for precision
    calibration_cache: Path | None
    reason: str


def _first(candidates: list[Path], root: Path) -> Path | None:
    """The first existing candidate; one that a symlink takes outside the run ``root`` is refused, not read."""
    found = next((path for path in candidates if path.is_file()), None)
    return None if found is None else artifact_path(root, found.relative_to(root).as_posix())


def _onnx_has_qdq(path: Path) -> bool:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)


def find_source_files(source: Path) -> SourceFiles:
    """Locate the build inputs: run/export + run/quantize, a flat bundle directory, or one .onnx file."""
    source = Path(source)
    if not source.exists():
        raise EdgepipeError(f"{source} does not exist; pass a run directory or an .onnx file")
    if source.is_file():
        if source.suffix != ".onnx":
            raise EdgepipeError(f"{source} is not an .onnx file or a run directory")
        if _onnx_has_qdq(source):
            return SourceFiles(source=source, int8_trt_onnx=source)
        if source.name.endswith(".fp16.onnx"):
            return SourceFiles(source=source, fp16_onnx=source)
        return SourceFiles(source=source, fp32_onnx=source)
    layout = RunLayout(source)
    quantize = layout.quantize
    files = SourceFiles(
        source=source,
        run_dir=source,
        # The pruned export is the deployable FP32 model (and what quantize calibrated) when it exists.
        fp32_onnx=_first([layout.export_pruned / FP32_ONNX, layout.export / FP32_ONNX, source / FP32_ONNX], source),
        fp16_onnx=_first([quantize / FP16_ONNX, source / FP16_ONNX], source),
        int8_trt_onnx=_first([quantize / INT8_TRT_ONNX, source / INT8_TRT_ONNX], source),
        int8_cpu_onnx=_first([quantize / INT8_CPU_ONNX, source / INT8_CPU_ONNX], source),
        calibration_cache=_first([quantize / CALIB_CACHE, source / CALIB_CACHE], source),
        sparse_2_4=_pruned_2_4(layout.prune),
        quantize_manifest=read_manifest(quantize) if (quantize / MANIFEST).is_file() else None,
    )
    if not any([files.fp32_onnx, files.fp16_onnx, files.int8_trt_onnx]):
        raise EdgepipeError(
            f"no ONNX model in {source} (looked for export/{FP32_ONNX}, quantize/{FP16_ONNX}, "
            f"quantize/{INT8_TRT_ONNX}); run `edgepipe export {source}` first"
        )
    return files


def _pruned_2_4(prune_dir: Path) -> bool:
    if not (prune_dir / MANIFEST).is_file():
        return False
    prune_config = read_manifest(prune_dir).config
    return str(prune_config.get("method", "")).replace(" ", "") == "2:4"


def check_cache_is_current(files: SourceFiles) -> None:
    """Refuse a calibration cache made for another model.onnx (the quantize manifest records which one)."""
    from edgepipe.trt.calib_cache import check_cache_is_fresh

    record = files.quantize_manifest.extra("calibration_cache") if files.quantize_manifest else None
    if files.calibration_cache is None or files.fp32_onnx is None or not record:
        return  # a cache brought without a quantize manifest: nothing to compare against
    check_cache_is_fresh(record, sha256_file(files.fp32_onnx))


def plan_build(files: SourceFiles, precision: str, trt_major: int) -> BuildPlan:
    """The ONNX, network typing and precision flags TensorRT ``trt_major`` needs for ``precision``: the device
    runtime's rule (edgepipe/device/planning.py ``plan_build``), so a bundle builds the same way on the device."""
    paths = {"fp32_onnx": files.fp32_onnx, "fp16_onnx": files.fp16_onnx, "int8_trt_onnx": files.int8_trt_onnx,
             "calibration_cache": files.calibration_cache}
    plan = device.plan_build(paths, precision, trt_major, where=str(files.source),
                             check_cache=lambda _cache: check_cache_is_current(files))
    cache = None if plan.calibration_cache is None else Path(plan.calibration_cache)
    return BuildPlan(Path(plan.onnx), plan.strongly_typed, plan.builder_flags, cache, plan.reason)
