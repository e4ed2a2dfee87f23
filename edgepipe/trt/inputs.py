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


def _require(path: Path | None, what: str, files: SourceFiles, why: str) -> Path:
    if path is None:
        raise EdgepipeError(
            f"{why} needs {what}, which {files.source} lacks; run `edgepipe quantize` on the run first"
        )
    return path


def check_cache_is_current(files: SourceFiles) -> None:
    """Refuse a calibration cache made for another model.onnx (the quantize manifest records which one)."""
    from edgepipe.trt.calib_cache import check_cache_is_fresh

    record = files.quantize_manifest.extra("calibration_cache") if files.quantize_manifest else None
    if files.calibration_cache is None or files.fp32_onnx is None or not record:
        return  # a cache brought without a quantize manifest: nothing to compare against
    check_cache_is_fresh(record, sha256_file(files.fp32_onnx))


def plan_build(files: SourceFiles, precision: str, trt_major: int) -> BuildPlan:
    """The ONNX, network typing and precision flags TensorRT ``trt_major`` needs for ``precision``."""
    if trt_major < 8:
        raise EdgepipeError(f"TensorRT {trt_major}.x is too old; edgepipe builds with TensorRT 8.0 or newer")
    if trt_major >= 11:
        if precision == "fp32":
            onnx = _require(files.fp32_onnx, FP32_ONNX, files, "an fp32 engine")
        elif precision == "fp16":
            onnx = _require(
                files.fp16_onnx, FP16_ONNX, files, f"fp16 on TensorRT {trt_major} (strongly typed only)"
            )
        else:
            onnx = _require(
                files.int8_trt_onnx, INT8_TRT_ONNX, files, f"int8 on TensorRT {trt_major} (QDQ only)"
            )
        return BuildPlan(
            onnx, True, (), None, f"TensorRT {trt_major}: strongly typed network from {onnx.name}"
        )
    if precision == "fp32":
        onnx = _require(files.fp32_onnx, FP32_ONNX, files, "an fp32 engine")
        return BuildPlan(onnx, False, (), None, f"TensorRT {trt_major}: fp32 from {onnx.name}")
    if precision == "fp16":
        onnx = _require(files.fp32_onnx, FP32_ONNX, files, "fp16 with the FP16 builder flag")
        return BuildPlan(
            onnx, False, ("FP16",), None, f"TensorRT {trt_major}: FP16 builder flag on {onnx.name}"
        )
    # int8: FP16 is enabled beside INT8 so layers left unquantized run in half precision, not FP32.
    flags = ("INT8", "FP16")
    prefer_cache = trt_major == 8
    if prefer_cache and files.calibration_cache is not None and files.fp32_onnx is not None:
        check_cache_is_current(files)
        return BuildPlan(
            files.fp32_onnx,
            False,
            flags,
            files.calibration_cache,
            f"TensorRT {trt_major}: implicit INT8 from {files.calibration_cache.name} "
            f"on {files.fp32_onnx.name}",
        )
    if files.int8_trt_onnx is not None:
        return BuildPlan(
            files.int8_trt_onnx,
            False,
            flags,
            None,
            f"TensorRT {trt_major}: explicit INT8 from the QDQ graph {files.int8_trt_onnx.name}",
        )
    if files.calibration_cache is not None and files.fp32_onnx is not None:
        check_cache_is_current(files)
        return BuildPlan(
            files.fp32_onnx,
            False,
            flags,
            files.calibration_cache,
            f"TensorRT {trt_major}: implicit INT8 from {files.calibration_cache.name} (no QDQ graph found)",
        )
    raise EdgepipeError(
        f"int8 needs {INT8_TRT_ONNX} or {CALIB_CACHE}, and {files.source} has neither; "
        "run `edgepipe quantize` first"
    )
