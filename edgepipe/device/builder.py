"""The builder: network, ONNX parser, builder config, optimization profile, timing cache; the same code for
`python3 edgepipe_device.py build` on a device and `edgepipe build` on a workstation (edgepipe/trt/builder.py)."""

import os

from .calib_cache import check_calibrator_used_cache, make_cache_calibrator
from .common import basename, write_bytes_atomic
from .errors import DeviceError
from .loader import make_logger, make_runtime, tensorrt_version
from .settings import OPTIONS


def network_flags(trt, strongly_typed, major):
    flags = 0
    if major < 10:
        # Required for ONNX in 8.x; "ignored because networks are always explicit batch" from 10.0.
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    # TensorRT 11 networks are always strongly typed; keep setting the flag while the enum still has it.
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def profile_shapes(input_shape, batch, input_name):
    rest = tuple(input_shape[1:])
    if any(dim < 0 for dim in rest):
        raise DeviceError("input {!r} has dynamic dimensions {} beyond the batch axis; export with a fixed image "
                          "size".format(input_name, tuple(input_shape)))
    if input_shape[0] >= 0 and tuple(batch) != (input_shape[0],) * 3:
        size = input_shape[0]
        raise DeviceError("input {!r} has a static batch of {}; pass --batch {}:{}:{} or export with a dynamic batch "
                          "axis".format(input_name, size, size, size, size))
    return tuple((b,) + rest for b in batch)


def _timing_cache_bytes(path):
    """The timing cache file's bytes (b"" when it does not exist yet), or None when no cache is asked for."""
    if path is None:
        return None
    if not os.path.isfile(str(path)):
        return b""
    with open(str(path), "rb") as handle:
        return handle.read()


def configure(trt, builder, network, config, plan, settings):
    """Apply every setting to ``config``; returns (what was applied, the calibrator or None, profile shapes)."""
    major = tensorrt_version(trt)[0]
    applied = {"builder_flags": []}

    workspace = int(settings.workspace_mib) << 20
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # TensorRT 8.0-8.3 (JetPack 4.6: 8.2)
        config.max_workspace_size = workspace
    applied["workspace_bytes"] = workspace

    def set_flag(name):
        config.set_flag(getattr(trt.BuilderFlag, name))
        applied["builder_flags"].append(name)

    for name in plan.builder_flags:
        set_flag(name)

    if network.num_inputs != 1:
        raise DeviceError("{} has {} inputs; edgepipe builds single-input models".format(plan.onnx,
                                                                                        network.num_inputs))
    tensor = network.get_input(0)
    input_shape = tuple(int(d) for d in tensor.shape)
    shapes = profile_shapes(input_shape, settings.batch, tensor.name)
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, *shapes)
    config.add_optimization_profile(profile)
    applied["profile"] = {"input": tensor.name, "min": shapes[0], "opt": shapes[1], "max": shapes[2]}

    calibrator = None
    if plan.calibration_cache is not None:
        calibrator = make_cache_calibrator(trt, plan.calibration_cache, batch_size=settings.batch[1])
        config.int8_calibrator = calibrator  # deprecated in 10.1, removed in 11 (never reached there)
        config.set_calibration_profile(profile)
        applied["int8_calibrator"] = "IInt8EntropyCalibrator2 serving {}".format(basename(plan.calibration_cache))

    if settings.dla_core is not None:
        if builder.num_DLA_cores <= settings.dla_core:
            raise DeviceError("--dla-core {} requested; this device has {} DLA core(s)".format(
                settings.dla_core, builder.num_DLA_cores))
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core
        applied["default_device_type"] = "DLA"
        applied["DLA_core"] = settings.dla_core
        if settings.gpu_fallback:
            set_flag("GPU_FALLBACK")

    for option in OPTIONS:
        option.apply(trt, config, getattr(settings, option.name), applied)

    timing_cache_bytes = _timing_cache_bytes(settings.timing_cache)
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


def default_parser_errors(parser, onnx_path):
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        lines.append("node {}: {}".format(error.node(), error.desc()))
    shown = lines[:10] + (["... {} more".format(len(lines) - 10)] if len(lines) > 10 else [])
    return "; ".join(shown) or "no error reported"


def build_serialized_engine(trt, plan, settings, describe_parser_errors=default_parser_errors):
    """Parse ``plan.onnx`` and build; returns {"engine", "input_name", "input_shape", "profile", "applied"}."""
    major = tensorrt_version(trt)[0]
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, plan.strongly_typed, major))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx)):
        raise DeviceError("TensorRT's ONNX parser rejected {}: {}".format(plan.onnx,
                                                                         describe_parser_errors(parser, plan.onnx)))
    config = builder.create_builder_config()
    cache_path = settings.timing_cache
    applied, calibrator, shapes = configure(trt, builder, network, config, plan, settings)

    serialized = builder.build_serialized_network(network, config)
    check_calibrator_used_cache(calibrator)
    if serialized is None:
        reason = "; ".join(logger.errors()[-3:]) or "no error logged"
        raise DeviceError("TensorRT could not build an engine from {}: {}".format(plan.onnx, reason))
    if cache_path is not None:
        write_bytes_atomic(str(cache_path), config.get_timing_cache().serialize())
        applied["timing_cache_saved"] = str(cache_path)
    tensor = network.get_input(0)
    return {"engine": serialized, "input_name": tensor.name, "input_shape": tuple(int(d) for d in tensor.shape),
            "profile": shapes, "applied": applied}


def check_engine_deserializes(trt, engine_bytes, settings):
    logger = make_logger(trt)
    runtime = make_runtime(trt, logger, settings)
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        reason = "; ".join(logger.errors()[-2:]) or "no error logged"
        raise DeviceError("the engine TensorRT just built does not load back: {}".format(reason))
    return engine
