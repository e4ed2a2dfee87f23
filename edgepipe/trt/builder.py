"""Drive the TensorRT builder: network, ONNX parser, builder config, optimization profile, timing cache.

Written against the TensorRT 10.x Python API (the `tensorrt-stubs` 10.13 surface, checked by
tests/unit/test_trt_api_surface.py), with the few 8.x and 11.x differences feature-tested in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from edgepipe.artifacts import write_bytes_atomic
from edgepipe.errors import EdgepipeError
from edgepipe.trt.calibrator import check_calibrator_used_cache, make_cache_calibrator
from edgepipe.trt.inputs import BuildPlan
from edgepipe.trt.loader import tensorrt_version
from edgepipe.trt.settings import HARDWARE_COMPAT_LEVELS, BuildSettings

_MAX_SHOWN_PARSER_ERRORS = 10


def make_logger(trt: ModuleType) -> Any:
    """A trt.ILogger that keeps warnings and errors, so a failed build can say TensorRT's own reason."""

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[Any, str]] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.Logger.INTERNAL_ERROR, trt.Logger.ERROR, trt.Logger.WARNING):
                self.messages.append((severity, msg))

        def errors(self) -> list[str]:
            return [m for s, m in self.messages if s in (trt.Logger.INTERNAL_ERROR, trt.Logger.ERROR)]

    return RecordingLogger()


@dataclass
class BuildResult:
    serialized_engine: Any  # trt.IHostMemory (buffer protocol)
    input_name: str
    input_shape: tuple[int, ...]
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    applied: dict[str, Any] = field(default_factory=dict)  # what was set on the config, for the manifest


def _network_flags(trt: ModuleType, strongly_typed: bool, major: int) -> int:
    flags = 0
    if major < 10:
        # Required for ONNX in 8.x; "ignored because networks are always explicit batch" from 10.0.
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    # TensorRT 11 networks are always strongly typed; keep setting the flag while the enum still has it.
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def parser_errors(parser: Any, onnx_path: Path) -> str:
    """The parser's own errors, one per node: "node 3 (Conv 'conv1'): <desc>"."""
    import onnx

    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        node = error.node()
        where = "model"
        if 0 <= node < len(nodes):
            where = f"node {node} ({nodes[node].op_type} {nodes[node].name!r})"
        lines.append(f"{where}: {error.desc()}")
    shown = lines[:_MAX_SHOWN_PARSER_ERRORS]
    if len(lines) > len(shown):
        shown.append(f"... {len(lines) - len(shown)} more")
    return "; ".join(shown) or "no error reported"


def _profile_shapes(
    input_shape: tuple[int, ...], batch: tuple[int, int, int], input_name: str
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    rest = tuple(input_shape[1:])
    if any(dim < 0 for dim in rest):
        raise EdgepipeError(
            f"input {input_name!r} has dynamic dimensions {input_shape} beyond the batch axis; "
            "export with a fixed image size"
        )
    if input_shape[0] >= 0 and tuple(batch) != (input_shape[0],) * 3:
        raise EdgepipeError(
            f"input {input_name!r} has a static batch of {input_shape[0]}; pass --batch "
            f"{input_shape[0]}:{input_shape[0]}:{input_shape[0]} or export with a dynamic batch axis"
        )
    return tuple((b, *rest) for b in batch)  # type: ignore[return-value]


# Builder settings that older TensorRT releases do not have, and the first release that does (NVIDIA's Python API
# docs per release: IBuilderConfig.builder_optimization_level, BuilderFlag.VERSION_COMPATIBLE and
# hardware_compatibility_level arrived in 8.6; HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY in 10.9).
_FIRST_RELEASE = {"opt_level": ((8, 6), "--opt-level"), "version_compatible": ((8, 6), "--version-compatible"),
                  "hardware_compat": ((8, 6), "--hardware-compat"),
                  "hardware_compat_same_cc": ((10, 9), "--hardware-compat same_cc")}


def check_release_supports(trt: ModuleType, settings: BuildSettings) -> None:
    """Refuse, in one line and before any work, a setting the running TensorRT release does not have."""
    version = tensorrt_version(trt)[:2]
    asked = {"opt_level": settings.opt_level is not None, "version_compatible": settings.version_compatible,
             "hardware_compat": settings.hardware_compat != "none",
             "hardware_compat_same_cc": settings.hardware_compat == "same_cc"}
    for key, wanted in asked.items():
        first, flag = _FIRST_RELEASE[key]
        if wanted and version < first:
            raise EdgepipeError(f"{flag} needs TensorRT {first[0]}.{first[1]} or newer; this machine has "
                                f"{trt.__version__}: drop it")


def configure(
    trt: ModuleType,
    builder: Any,
    network: Any,
    config: Any,
    plan: BuildPlan,
    settings: BuildSettings,
    timing_cache_bytes: bytes | None,
) -> tuple[dict[str, Any], Any, tuple]:
    """Apply every setting to ``config``; returns (what was applied, the calibrator or None, profile)."""
    major = tensorrt_version(trt)[0]
    applied: dict[str, Any] = {"builder_flags": []}

    workspace = settings.workspace_mib << 20
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # TensorRT 8.0-8.3 (JetPack 4.6: 8.2)
        config.max_workspace_size = workspace
    applied["workspace_bytes"] = workspace

    def set_flag(name: str) -> None:
        config.set_flag(getattr(trt.BuilderFlag, name))
        applied["builder_flags"].append(name)

    for name in plan.builder_flags:
        set_flag(name)

    if network.num_inputs != 1:
        raise EdgepipeError(
            f"{plan.onnx} has {network.num_inputs} inputs; edgepipe builds single-input models"
        )
    tensor = network.get_input(0)
    input_shape = tuple(int(d) for d in tensor.shape)
    shapes = _profile_shapes(input_shape, settings.batch, tensor.name)
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, *shapes)
    config.add_optimization_profile(profile)
    applied["profile"] = {"input": tensor.name, "min": shapes[0], "opt": shapes[1], "max": shapes[2]}

    calibrator = None
    if plan.calibration_cache is not None:
        calibrator = make_cache_calibrator(trt, plan.calibration_cache, batch_size=settings.batch[1])
        config.int8_calibrator = calibrator  # deprecated in 10.1, removed in 11 (never reached there)
        config.set_calibration_profile(profile)
        applied["int8_calibrator"] = f"IInt8EntropyCalibrator2 serving {plan.calibration_cache.name}"

    if settings.dla_core is not None:
        if builder.num_DLA_cores <= settings.dla_core:
            raise EdgepipeError(
                f"--dla-core {settings.dla_core} requested; "
                f"this device has {builder.num_DLA_cores} DLA core(s)"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core
        applied["default_device_type"] = "DLA"
        applied["DLA_core"] = settings.dla_core
        if settings.gpu_fallback:
            set_flag("GPU_FALLBACK")

    if settings.sparsity:
        set_flag("SPARSE_WEIGHTS")
    if settings.version_compatible:
        set_flag("VERSION_COMPATIBLE")
    if settings.opt_level is not None:
        config.builder_optimization_level = settings.opt_level
        applied["builder_optimization_level"] = settings.opt_level
    if settings.hardware_compat != "none":
        level = HARDWARE_COMPAT_LEVELS[settings.hardware_compat]
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level)
        applied["hardware_compatibility_level"] = level

    if timing_cache_bytes is not None:
        cache = config.create_timing_cache(timing_cache_bytes)
        # ignore_mismatch=False: TensorRT refuses (returns False) a cache from another GPU or TensorRT release.
        if config.set_timing_cache(cache, False):
            applied["timing_cache"] = "reused" if timing_cache_bytes else "new"
        else:
            config.set_timing_cache(config.create_timing_cache(b""), False)
            applied["timing_cache"] = "replaced: the file was made on another GPU or TensorRT release"
    applied["network_strongly_typed"] = plan.strongly_typed
    applied["tensorrt_major"] = major
    return applied, calibrator, shapes


def build_serialized_engine(trt: ModuleType, plan: BuildPlan, settings: BuildSettings) -> BuildResult:
    """Parse ``plan.onnx`` and build a serialized engine; EdgepipeError with TensorRT's reason on failure."""
    major = tensorrt_version(trt)[0]
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plan.strongly_typed, major))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx)):
        raise EdgepipeError(
            f"TensorRT's ONNX parser rejected {plan.onnx}: {parser_errors(parser, plan.onnx)}"
        )
    config = builder.create_builder_config()

    cache_path = settings.timing_cache
    cache_bytes = None
    if cache_path is not None:
        cache_bytes = Path(cache_path).read_bytes() if Path(cache_path).is_file() else b""
    applied, calibrator, shapes = configure(trt, builder, network, config, plan, settings, cache_bytes)

    serialized = builder.build_serialized_network(network, config)
    check_calibrator_used_cache(calibrator)
    if serialized is None:
        reason = "; ".join(logger.errors()[-3:]) or "no error logged"
        raise EdgepipeError(f"TensorRT could not build an engine from {plan.onnx}: {reason}")
    if cache_path is not None:
        write_bytes_atomic(Path(cache_path), config.get_timing_cache().serialize())
        applied["timing_cache_saved"] = str(cache_path)
    tensor = network.get_input(0)
    return BuildResult(serialized, tensor.name, tuple(int(d) for d in tensor.shape), shapes, applied)


def make_runtime(trt: ModuleType, logger: Any, settings: dict[str, Any]) -> Any:
    """A trt.Runtime set up for an engine built with ``settings`` (its manifest's): what deserialization needs."""
    runtime = trt.Runtime(logger)
    if settings.get("dla_core") is not None:
        # The DLA core a DLA engine runs on is chosen at deserialization (IRuntime.DLA_core), not at build.
        runtime.DLA_core = int(settings["dla_core"])
    if settings.get("version_compatible"):
        # A version-compatible plan embeds a lean runtime that TensorRT (>= 8.6) only runs when allowed.
        runtime.engine_host_code_allowed = True
    return runtime


def check_engine_deserializes(trt: ModuleType, engine_bytes: Any, settings: BuildSettings) -> Any:
    """Load the engine back (the stage checks its result before returning)."""
    logger = make_logger(trt)
    runtime = make_runtime(trt, logger, settings.to_json())
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        reason = "; ".join(logger.errors()[-2:]) or "no error logged"
        raise EdgepipeError(f"the engine TensorRT just built does not load back: {reason}")
    return engine
