"""`build`: ONNX (from a run directory or a file) in, a TensorRT engine directory out.

run/export/model.onnx + run/quantize/{model.fp16.onnx, model.int8.trt.onnx, trt.calib.cache}
  -> run/build-<precision>/{model.<precision>.engine, manifest.json}

The manifest records what an engine is tied to (TensorRT version, GPU, compute capability, L4T
release) and every builder setting, so the runner can refuse an engine from another machine and say
the exact command that rebuilds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepipe.artifacts import add_artifact, new_manifest, sha256_file
from edgepipe.device.settings import OPTIONS
from edgepipe.errors import EdgepipeError, MissingDependency
from edgepipe.recipe import BuildConfig
from edgepipe.run import BUILD as STAGE
from edgepipe.run import CALIB_CACHE, INT8_TRT_ONNX, build_dir_name, engine_file
from edgepipe.stages.frame import StageFrame
from edgepipe.trt.settings import BuildSettings, check_against_target, check_settings, default_workspace_mib


def default_out(source: Path, precision: str) -> Path:
    source = Path(source)
    return (source if source.is_dir() else source.parent) / build_dir_name(precision)


def _best_without_target(cc: tuple[int, int], files: Any) -> tuple[str, str]:
    # TensorRT hardware/precision matrix: INT8 from SM 6.1, fast FP16 on SM 5.3, 6.0, 6.2 and 7.0+.
    sm = f"sm_{cc[0]}{cc[1]}"
    if cc >= (6, 1) and (files.int8_trt_onnx or files.calibration_cache):
        return "int8", f"--precision best resolved to int8 on {sm} (INT8 inputs found)"
    if cc in ((5, 3), (6, 0), (6, 2)) or cc >= (7, 0):
        return "fp16", f"--precision best resolved to fp16 on {sm}"
    return "fp32", f"--precision best resolved to fp32 on {sm} (no fast FP16/INT8)"


def _best_for_target(profile: Any, files: Any) -> tuple[str, str]:
    """"best" on a target: its fastest precision that this run has the inputs for (INT8 needs the QDQ graph or
    the calibration cache: a run that was not quantized builds FP16 rather than failing)."""
    from edgepipe.targets import resolve_precision

    precision, reason = resolve_precision(profile, "best")
    if precision == "int8" and not (files.int8_trt_onnx or files.calibration_cache):
        fallback = "fp16" if "fp16" in profile.precisions else "fp32"
        return fallback, (f"--precision best resolved to {fallback} for {profile.name}: no {INT8_TRT_ONNX} or "
                          f"{CALIB_CACHE} in the run for int8 (run `edgepipe quantize` for it)")
    return precision, reason


def _settings(config: BuildConfig, precision: str, workspace_mib: int, target: str | None,
              timing_cache: Path | None = None) -> BuildSettings:
    """The settings of ``config`` (every option a recipe holds) with a resolved precision and workspace."""
    values = {option.name: getattr(config, option.name) for option in OPTIONS[1:] if option.recipe}
    values.update(workspace_mib=workspace_mib, timing_cache=timing_cache)
    return BuildSettings(precision, target=target, **values)


def check_request(config: BuildConfig, target: str | None = None) -> None:
    """What a build request can be refused for without TensorRT, a GPU or the run's files (the pipeline asks
    this of a recipe before training). ``best`` is checked as the target's best precision, else as fp16."""
    profile = None
    precision = config.precision
    if target is not None:
        from edgepipe.targets import get_target, resolve_precision

        profile = get_target(target)
        precision, _ = resolve_precision(profile, precision)
    settings = _settings(config, "fp16" if precision == "best" else precision,
                         config.workspace_mib or default_workspace_mib(profile.memory_mib if profile else None), target)
    if profile is not None:  # what the device cannot do at all comes before flag combinations
        check_against_target(settings, profile)
    check_settings(settings)


def _running_jetpack(profile: Any, tensorrt_version: str) -> str | None:
    """The JetPack release this TensorRT comes with on the target (what the engine is tied to), if a Jetson."""
    release = profile.release_for(tensorrt_version) if profile is not None else None
    return release.jetpack if release is not None else None


def _missing(reason: str, files: Any) -> MissingDependency:
    fallback = files.cpu_fallback()
    where = (
        f"use the onnxruntime CPU artifact {fallback}" if fallback else "use the onnxruntime CPU artifacts"
    )
    return MissingDependency(
        f"cannot build a TensorRT engine: {reason}; {where} (eval/bench pick it automatically)"
    )


def build(source: Path, out: Path | None = None, config: BuildConfig | None = None, *, target: str | None = None,
          timing_cache: Path | None = None, rebuild: bool = False) -> Path:
    """Build ``model.<precision>.engine`` from SOURCE (run directory or .onnx file); returns the stage dir."""
    from edgepipe.bundles import check_bundle_target
    from edgepipe.trt.inputs import find_source_files, plan_build
    from edgepipe.trt.loader import cuda_device, import_tensorrt, tensorrt_version
    from edgepipe.trt.portability import machine_facts

    config = config or BuildConfig()
    precision, workspace_mib = config.precision, config.workspace_mib
    source = Path(source).resolve()
    target = check_bundle_target(source, target)  # a bundle names its target; refuse another one
    files = find_source_files(source)
    profile = None
    reason = f"{precision} as requested"
    if target is not None:
        from edgepipe.targets import get_target, resolve_precision

        profile = get_target(target)
        precision, reason = (_best_for_target(profile, files) if precision == "best"
                             else resolve_precision(profile, precision))
        if workspace_mib is None:
            workspace_mib = default_workspace_mib(profile.memory_mib)

    # Everything checkable without a GPU is refused before TensorRT is touched.
    check_request(config.model_copy(update={"precision": precision, "workspace_mib": workspace_mib}), target)
    if config.sparsity and not files.sparse_2_4:
        raise EdgepipeError(
            f"--sparsity needs a 2:4-pruned model, and {source} has no prune manifest with method '2:4'; "
            "run `edgepipe prune --method 2:4` first or drop --sparsity"
        )

    try:
        trt = import_tensorrt()
    except MissingDependency as exc:
        raise _missing(str(exc).split(": ", 1)[-1], files) from None
    device = cuda_device()
    if device is None:
        raise _missing(f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible", files)
    version = tensorrt_version(trt)
    if profile is not None:
        if not profile.supports_tensorrt(trt.__version__):
            raise EdgepipeError(
                f"{profile.name} runs TensorRT {profile.tensorrt_text()}, this machine has {trt.__version__}; build on "
                "the device (engines do not move between TensorRT versions)"
            )
        if tuple(device.compute_capability) != tuple(profile.compute_capability):
            raise EdgepipeError(
                f"{profile.name} is {profile.sm}, this GPU ({device.name}) is "
                f"sm_{device.compute_capability[0]}"
                f"{device.compute_capability[1]}; build on the target device"
            )
    if precision == "best":
        precision, reason = _best_without_target(device.compute_capability, files)
    if workspace_mib is None:
        workspace_mib = default_workspace_mib(device.total_memory_mib)
    settings = _settings(config, precision, workspace_mib, target,
                         None if timing_cache is None else Path(timing_cache).resolve())
    check_settings(settings)
    from edgepipe.device.settings import check_release_supports

    check_release_supports(trt, settings)
    if profile is not None:
        check_against_target(settings, profile)
    if settings.workspace_mib > device.total_memory_mib:
        raise EdgepipeError(
            f"--workspace {settings.workspace_mib} MiB exceeds {device.name}'s {device.total_memory_mib} MiB"
        )

    plan = plan_build(files, settings.precision, version[0])
    machine = machine_facts(trt, device)
    out = Path(out) if out is not None else default_out(source, settings.precision)
    frame = StageFrame(STAGE, out)
    parents = {"onnx": sha256_file(plan.onnx)}
    if plan.calibration_cache is not None:
        parents["calibration_cache"] = sha256_file(plan.calibration_cache)
    config = {
        "source": str(source),
        "precision": settings.precision,
        "precision_reason": reason,
        "onnx": str(plan.onnx),
        "calibration_cache": None if plan.calibration_cache is None else str(plan.calibration_cache),
        "plan": plan.reason,
        "settings": settings.to_json(),
        "cli_flags": settings.cli_flags(),
        "machine": machine.to_json(),
        "jetpack": _running_jetpack(profile, trt.__version__),
    }
    manifest = new_manifest(STAGE, config, parents)
    if frame.up_to_date(manifest, reuse=not rebuild, quiet=True):
        return out  # same inputs, same machine, same settings: the engine on disk is this build

    from edgepipe.device.builder import check_engine_deserializes
    from edgepipe.trt.builder import build_serialized_engine

    result = build_serialized_engine(trt, plan, settings)
    filename = engine_file(settings.precision)
    with frame.writing(manifest) as tmp:
        with open(tmp / filename, "wb") as handle:
            handle.write(memoryview(result.serialized_engine))
        check_engine_deserializes(trt, (tmp / filename).read_bytes(), settings.to_json())
        manifest.config["applied"] = result.applied
        manifest.config["input"] = {"name": result.input_name, "shape": list(result.input_shape)}
        add_artifact(
            manifest,
            tmp,
            filename,
            name=f"tensorrt-{settings.precision}",
            fmt="engine",
            precision=settings.precision,
            backend="tensorrt",
        )
    return out
