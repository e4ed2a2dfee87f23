"""The edgepipe device runtime: build, eval, infer and bench a deploy bundle with nothing but TensorRT and numpy.

Copied into every bundle as ``edgepipe_device_runtime.py``, with its task scores (scoring.py, as
``edgepipe_device_scoring.py``), its CUDA (cuda.py, as ``edgepipe_device_cuda.py``) beside it and the
``edgepipe_device.py`` launcher, which checks the Python version
first. It imports the standard library, numpy (>= 1.13) and
``tensorrt`` (8.0 to 11.x), and reaches CUDA through ``ctypes`` on libcudart, as Polygraphy's
polygraphy/cuda/cuda.py does: no pycuda (no aarch64 wheel), no torch (PyPI's aarch64 torch has no CUDA),
no scikit-learn, pydantic, typer, rich, yaml, onnx or PIL. Its syntax runs on Python 3.6 (JetPack 4.6 on
the Nano; checked by ``vermin -t=3.6-`` in the tests). The full ``edgepipe build / eval / bench`` use the
same engine, builder and CUDA code from here (edgepipe/trt/, edgepipe/runners/tensorrt.py): one
implementation of everything that touches TensorRT.

TensorRT API per release, read from NVIDIA/TensorRT's bindings (python/src/infer/pyCore.cpp per release branch):
- 8.0-8.4: bindings (num_bindings, binding_is_input, set_binding_shape, execute_async_v2);
  ``max_workspace_size`` before 8.4, ``set_memory_pool_limit`` from 8.4.
- 8.5+: named I/O tensors (num_io_tensors, get_tensor_mode, set_input_shape, set_tensor_address,
  execute_async_v3), the only API from 10.0.
- 8.6+: builder_optimization_level, BuilderFlag.VERSION_COMPATIBLE, hardware_compatibility_level,
  Runtime.engine_host_code_allowed; 10.9+: HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY.
- 11: no precision builder flags, no implicit INT8: strongly typed networks from the FP16 / QDQ graphs.
- ``trt.nptype`` is not used: before 8.5.3 it refers to ``np.bool``, which numpy 1.24 removed.

Usage (inside or beside a bundle):
    python3 edgepipe_device.py build BUNDLE [--precision best|fp32|fp16|int8] [--dla-core N] [--batch 1:16:64]
    python3 edgepipe_device.py eval BUNDLE        # exit 1 when an artifact is over the accuracy budget
    python3 edgepipe_device.py infer BUNDLE INPUT.npy [--top 3]
    python3 edgepipe_device.py bench BUNDLE [--batch 1] [--seconds 3]
    python3 edgepipe_device.py triton BUNDLE        # model_repository/NAME/{config.pbtxt, 1/model.plan}
    python3 edgepipe_device.py deepstream BUNDLE    # a Gst-nvinfer config for the engine
    python3 edgepipe_device.py doctor               # Python, numpy, TensorRT, CUDA, GPU, trtexec here
"""

import argparse
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

try:  # the workstation package: edgepipe/device/scoring.py and cuda.py
    from .cuda import (  # noqa: F401 - re-exported: the runtime's CUDA, for its users and tests
        MEMCPY_DEVICE_TO_HOST,
        MEMCPY_HOST_TO_DEVICE,
        Cudart,
        DeviceError,
        HostBuffer,
        MissingPiece,
        cuda_device,
        cudart,
        jetson_model,
        set_cudart,
    )
    from .scoring import (
        DISPLAY_SCORE,
        TASK_SCORES,
        DeclaredTooLarge,
        load_arrays_bounded,
        model_outputs,
        read_json_bounded,
    )
except (ImportError, SystemError):  # a bundle: the same files beside this one (the launcher put it on sys.path)
    from edgepipe_device_cuda import (  # noqa: F401
        MEMCPY_DEVICE_TO_HOST,
        MEMCPY_HOST_TO_DEVICE,
        Cudart,
        DeviceError,
        HostBuffer,
        MissingPiece,
        cuda_device,
        cudart,
        jetson_model,
        set_cudart,
    )
    from edgepipe_device_scoring import (
        DISPLAY_SCORE,
        TASK_SCORES,
        DeclaredTooLarge,
        load_arrays_bounded,
        model_outputs,
        read_json_bounded,
    )

RUNTIME_VERSION = "1"
TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # where JetPack and NVIDIA's containers install it
CACHE_ALGORITHM = "EntropyCalibration2"
PRECISIONS = ("int8", "fp16", "fp32")  # best first
DEFAULT_BATCH = (1, 16, 64)
DEFAULT_WORKSPACE_MIB = 1024
MAX_OPT_LEVEL = 5
HARDWARE_COMPAT_LEVELS = {"none": "NONE", "ampere_plus": "AMPERE_PLUS", "same_cc": "SAME_COMPUTE_CAPABILITY"}
# Bundle layout (edgepipe/run.py owns these names on the workstation; a test checks both agree).
MANIFEST = "manifest.json"
EXPORT, QUANTIZE, BUILD = "export", "quantize", "build"
FP32_ONNX, FP16_ONNX, INT8_TRT_ONNX, CALIB_CACHE = "model.onnx", "model.fp16.onnx", "model.int8.trt.onnx", \
    "trt.calib.cache"
REFERENCE_NPZ = "reference.npz"
LABELS_TXT = "labels.txt"


def say(message):
    _write(sys.stderr, message)


def emit(message):
    """emit() that survives Python 3.6 in the C locale (no PEP 538 coercion): non-ASCII labels still print."""
    _write(sys.stdout, message)


def _write(stream, message):
    try:
        stream.write(message + "\n")
    except UnicodeEncodeError:
        stream.buffer.write((message + "\n").encode("utf-8"))
    stream.flush()


def read_json(path):
    """A bundle's JSON file: one DeviceError naming it when too large or nested too deeply."""
    try:
        return read_json_bounded(path)
    except DeclaredTooLarge as exc:
        raise DeviceError(str(exc)) from None


def version_tuple(text):
    """(10, 3, 0, 26) from "10.3.0.26"; non-numeric tails ("8.6.1.post1") are cut."""
    parts = []
    for part in str(text).split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes_atomic(path, data):
    """Write to a temporary file beside ``path``, then rename: a killed run never leaves half a file."""
    tmp = "{}.tmp-{}".format(path, os.getpid())
    with open(tmp, "wb") as handle:
        handle.write(memoryview(data))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


_injected = {"tensorrt": None}


def set_tensorrt_module(module):
    """Serve ``module`` instead of ``import tensorrt`` (tests: the recording fake); None restores the import."""
    _injected["tensorrt"] = module


# --- TensorRT discovery ---------------------------------------------------------------------------------------

TENSORRT_INSTALL_HINT = ("install TensorRT from JetPack (Jetson: `sudo apt install python3-libnvinfer`) or "
                         "`pip install tensorrt --extra-index-url https://pypi.nvidia.com` (desktop)")


def _is_real_tensorrt(module):
    # tensorrt-stubs installs site-packages/tensorrt/ with only __init__.pyi: an empty namespace package.
    return hasattr(module, "Builder") and isinstance(getattr(module, "__version__", None), str)


def load_tensorrt():
    """(module, "") or (None, why not); never raises."""
    if _injected["tensorrt"] is not None:
        return _injected["tensorrt"], ""
    try:
        module = importlib.import_module("tensorrt")
    except ImportError as exc:
        return None, "the tensorrt Python package is not importable ({})".format(exc)
    except OSError as exc:  # a wheel whose shared libraries are missing
        return None, "the tensorrt package failed to load its libraries ({})".format(exc)
    if not _is_real_tensorrt(module):
        return None, "only the tensorrt-stubs type stubs are installed here, not TensorRT itself"
    return module, ""


def import_tensorrt():
    module, reason = load_tensorrt()
    if module is None:
        raise MissingPiece("TensorRT is not available: {}; {}".format(reason, TENSORRT_INSTALL_HINT))
    return module


def tensorrt_version(trt):
    return version_tuple(trt.__version__)


# trt.DataType member name -> numpy type (not trt.nptype: see the module docstring).
_NUMPY_TYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
                "BOOL": np.bool_, "UINT8": np.uint8}


def numpy_dtype(dtype):
    name = getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1])
    if name not in _NUMPY_TYPES:
        raise DeviceError("engine input/output type {} has no numpy equivalent; export the model with float32 "
                          "inputs and outputs".format(name))
    return _NUMPY_TYPES[name]


def tensorrt_version_number(version):
    """NV_TENSORRT_VERSION as cache headers print it: 8.6.1 -> 8601, 10.3.0 -> 100300 (NvInferVersion.h)."""
    parts = list(version_tuple(version)) + [0, 0, 0]
    if not version_tuple(version):
        raise DeviceError("TensorRT version {!r} is not like 8.6.1 or 10.3".format(version))
    major, minor, patch = parts[:3]
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def cache_header(version):
    return "TRT-{}-{}".format(tensorrt_version_number(version), CACHE_ALGORITHM)


def with_running_header(cache, version):
    """The cache as the running TensorRT expects it: the header names that very version (8.5.2 -> TRT-8502-...).

    TensorRT ignores a cache whose header names another release and asks for calibration data instead; the
    scales (per-tensor amax / 127) do not depend on the release, so the header is rewritten at load.
    """
    _, _, body = bytes(cache).partition(b"\n")
    return cache_header(version).encode() + b"\n" + body


def read_cache(path):
    with open(path, "rb") as handle:
        data = handle.read()
    header = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    if not header.startswith("TRT-") or not header.endswith(CACHE_ALGORITHM):
        raise DeviceError("{} is not an IInt8EntropyCalibrator2 cache (first line {!r}, expected "
                          "'TRT-<version>-{}'); rerun `edgepipe quantize`".format(path, header[:60], CACHE_ALGORITHM))
    return data


def make_logger(trt):
    """A trt.ILogger that keeps warnings and errors, so a failure can say TensorRT's own reason."""

    class RecordingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages = []

        def log(self, severity, msg):
            if severity in (trt.Logger.INTERNAL_ERROR, trt.Logger.ERROR, trt.Logger.WARNING):
                self.messages.append((severity, msg))

        def errors(self):
            return [m for s, m in self.messages if s in (trt.Logger.INTERNAL_ERROR, trt.Logger.ERROR)]

    return RecordingLogger()


def make_runtime(trt, logger, settings):
    """A trt.Runtime set up for an engine built with ``settings`` (its manifest's): what deserialization needs."""
    runtime = trt.Runtime(logger)
    if settings.get("dla_core") is not None:
        # The DLA core a DLA engine runs on is chosen at deserialization (IRuntime.DLA_core), not at build.
        runtime.DLA_core = int(settings["dla_core"])
    if settings.get("version_compatible"):
        # A version-compatible plan embeds a lean runtime that TensorRT (>= 8.6) only runs when allowed.
        runtime.engine_host_code_allowed = True
    return runtime


# --- building -------------------------------------------------------------------------------------------------

class BuildPlan(object):
    """Which ONNX, network typing, precision flags and calibration cache a precision needs on a release."""

    def __init__(self, onnx, strongly_typed, builder_flags, calibration_cache, reason):
        self.onnx, self.strongly_typed, self.builder_flags = onnx, strongly_typed, tuple(builder_flags)
        self.calibration_cache, self.reason = calibration_cache, reason


def plan_build(files, precision, trt_major, where="the bundle", check_cache=None):
    """The build inputs for ``precision`` on TensorRT ``trt_major``.

    ``files``: {"fp32_onnx", "fp16_onnx", "int8_trt_onnx", "calibration_cache"} -> path or None.
    - 11+: strongly typed only (no precision flags, no implicit INT8): FP16 / QDQ graphs.
    - 9/10: builder flags; INT8 from the QDQ graph, else the calibration cache.
    - 8.x: builder flags; INT8 from the calibration cache (what JetPack 4/5 are known to handle), else QDQ.
    ``check_cache(path)`` refuses a cache made for another model before it is used.
    """
    def need(key, name, why):
        path = files.get(key)
        if path is None:
            raise DeviceError("{} needs {}, which {} lacks; run `edgepipe quantize` on the run first".format(
                why, name, where))
        return path

    if trt_major < 8:
        raise DeviceError("TensorRT {}.x is too old; edgepipe builds with TensorRT 8.0 or newer".format(trt_major))
    if trt_major >= 11:
        if precision == "fp32":
            onnx = need("fp32_onnx", FP32_ONNX, "an fp32 engine")
        elif precision == "fp16":
            onnx = need("fp16_onnx", FP16_ONNX, "fp16 on TensorRT {} (strongly typed only)".format(trt_major))
        else:
            onnx = need("int8_trt_onnx", INT8_TRT_ONNX, "int8 on TensorRT {} (QDQ only)".format(trt_major))
        return BuildPlan(onnx, True, (), None, "TensorRT {}: strongly typed network from {}".format(
            trt_major, os.path.basename(str(onnx))))
    if precision == "fp32":
        onnx = need("fp32_onnx", FP32_ONNX, "an fp32 engine")
        return BuildPlan(onnx, False, (), None, "TensorRT {}: fp32 from {}".format(trt_major, _name(onnx)))
    if precision == "fp16":
        onnx = need("fp32_onnx", FP32_ONNX, "fp16 with the FP16 builder flag")
        return BuildPlan(onnx, False, ("FP16",), None, "TensorRT {}: FP16 builder flag on {}".format(
            trt_major, _name(onnx)))
    # int8: FP16 beside INT8, so layers left unquantized run in half precision, not FP32.
    flags = ("INT8", "FP16")
    fp32, qdq, cache = files.get("fp32_onnx"), files.get("int8_trt_onnx"), files.get("calibration_cache")
    if trt_major == 8 and cache is not None and fp32 is not None:
        if check_cache:
            check_cache(cache)
        return BuildPlan(fp32, False, flags, cache, "TensorRT {}: implicit INT8 from {} on {}".format(
            trt_major, _name(cache), _name(fp32)))
    if qdq is not None:
        return BuildPlan(qdq, False, flags, None, "TensorRT {}: explicit INT8 from the QDQ graph {}".format(
            trt_major, _name(qdq)))
    if cache is not None and fp32 is not None:
        if check_cache:
            check_cache(cache)
        return BuildPlan(fp32, False, flags, cache, "TensorRT {}: implicit INT8 from {} (no QDQ graph found)".format(
            trt_major, _name(cache)))
    raise DeviceError("int8 needs {} or {}, and {} has neither; run `edgepipe quantize` first".format(
        INT8_TRT_ONNX, CALIB_CACHE, where))


def _name(path):
    return os.path.basename(str(path))


class BuildSettings(object):
    """The builder settings the runtime's own `build` takes (the workstation's BuildSettings has the same names)."""

    def __init__(self, precision, workspace_mib=DEFAULT_WORKSPACE_MIB, dla_core=None, gpu_fallback=False,
                 sparsity=False, timing_cache=None, batch=DEFAULT_BATCH, opt_level=None, version_compatible=False,
                 hardware_compat="none"):
        self.precision, self.workspace_mib, self.dla_core = precision, int(workspace_mib), dla_core
        self.gpu_fallback, self.sparsity, self.timing_cache = gpu_fallback, sparsity, timing_cache
        self.batch, self.opt_level, self.version_compatible = tuple(batch), opt_level, version_compatible
        self.hardware_compat = hardware_compat

    def to_json(self):
        return {"precision": self.precision, "workspace_mib": self.workspace_mib, "dla_core": self.dla_core,
                "gpu_fallback": self.gpu_fallback, "sparsity": self.sparsity,
                "timing_cache": None if self.timing_cache is None else str(self.timing_cache),
                "batch": list(self.batch), "opt_level": self.opt_level,
                "version_compatible": self.version_compatible, "hardware_compat": self.hardware_compat}


# Builder settings older releases lack, and the first release that has them (NVIDIA's Python API docs per release).
FIRST_RELEASE = {"opt_level": ((8, 6), "--opt-level"), "version_compatible": ((8, 6), "--version-compatible"),
                 "hardware_compat": ((8, 6), "--hardware-compat"),
                 "hardware_compat_same_cc": ((10, 9), "--hardware-compat same_cc")}


def check_release_supports(trt, settings):
    """Refuse, in one line and before any work, a setting the running TensorRT release does not have."""
    version = tensorrt_version(trt)[:2]
    asked = {"opt_level": settings.opt_level is not None, "version_compatible": bool(settings.version_compatible),
             "hardware_compat": settings.hardware_compat != "none",
             "hardware_compat_same_cc": settings.hardware_compat == "same_cc"}
    for key in sorted(asked):
        first, flag = FIRST_RELEASE[key]
        if asked[key] and version < first:
            raise DeviceError("{} needs TensorRT {}.{} or newer; this machine has {}: drop it".format(
                flag, first[0], first[1], trt.__version__))


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


def make_cache_calibrator(trt, cache_path, batch_size=1):
    """A trt.IInt8EntropyCalibrator2 that only serves ``cache_path`` (its header rewritten to the running release)
    and never calibrates: if TensorRT rejects the cache and asks for data, it gets none and the build is refused."""
    cache = with_running_header(read_cache(cache_path), trt.__version__)

    class CacheOnlyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            # pybind11 trampolines need the base __init__ called explicitly (TensorRT Python API docs).
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = cache_path
            self.calibration_requested = False
            self.cache_reads = 0

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            self.calibration_requested = True
            return None

        def read_calibration_cache(self):
            self.cache_reads += 1
            return cache

        def write_calibration_cache(self, cache):
            return None  # the quantize stage owns trt.calib.cache

    return CacheOnlyCalibrator()


def check_calibrator_used_cache(calibrator):
    if calibrator is not None and calibrator.calibration_requested:
        raise DeviceError("TensorRT rejected {} and asked for calibration data (the cache was made by another "
                          "TensorRT version or calibrator); rerun `edgepipe quantize` with this TensorRT, or build "
                          "from the QDQ model".format(calibrator.cache_path))


def configure(trt, builder, network, config, plan, settings, timing_cache_bytes):
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
        applied["int8_calibrator"] = "IInt8EntropyCalibrator2 serving {}".format(_name(plan.calibration_cache))

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
    cache_bytes = None
    if cache_path is not None:
        cache_bytes = b""
        if os.path.isfile(str(cache_path)):
            with open(str(cache_path), "rb") as handle:
                cache_bytes = handle.read()
    applied, calibrator, shapes = configure(trt, builder, network, config, plan, settings, cache_bytes)

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


# --- running an engine ----------------------------------------------------------------------------------------

class TensorIO(object):
    """One engine input or output: its name, engine shape (-1 dynamic), numpy type, profile range, buffers."""

    def __init__(self, name, index, is_input, shape, dtype):
        self.name, self.index, self.is_input = name, index, is_input
        self.shape, self.dtype = tuple(shape), dtype
        self.min_shape, self.max_shape = (), ()
        self.device, self.host = 0, None

    def spec_shape(self):
        """The shape callers see: None where dynamic; a profile with min == max batch is a static batch."""
        shape = [None if d < 0 else d for d in self.shape]
        if self.is_input and shape and shape[0] is None and self.min_shape and self.min_shape[0] == self.max_shape[0]:
            shape[0] = self.max_shape[0]
        return tuple(shape)


class Engine(object):
    """A deserialized TensorRT engine with device buffers for its profile's max batch, run on one CUDA stream.

    ``infer({name: array})`` returns every output by name; batches above the profile max are split, a tail
    below the profile min (DLA's static batch) is padded and cut back. ``last_timing``: GPU compute (CUDA
    events around the execute call) and host-to-host milliseconds of the last call.
    """

    def __init__(self, path, settings=None, trt=None, cuda=None):
        self.path = str(path)
        self.settings = settings or {}
        self.trt = trt or import_tensorrt()
        self.cuda = cuda or cudart()
        self.last_timing = None
        self._host_buffers = []
        self._stream = self._start = self._end = 0
        self._open()

    def _open(self):
        trt = self.trt
        if not os.path.isfile(self.path):
            raise DeviceError("engine file not found: {}".format(self.path))
        with open(self.path, "rb") as handle:
            data = handle.read()
        if not data:
            raise DeviceError("engine file {} is empty; build it again".format(self.path))
        if self.cuda.device_count() < 1:
            raise MissingPiece("TensorRT {} is installed but no CUDA GPU is visible".format(trt.__version__))
        self.logger = make_logger(trt)
        self.runtime = make_runtime(trt, self.logger, self.settings)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            detail = "; ".join(self.logger.errors()[-1:]) or "TensorRT could not deserialize it"
            raise DeviceError("engine file {} does not load ({} bytes: truncated, corrupt, or from another TensorRT "
                              "version: {}); build it again on this device".format(self.path, len(data), detail))
        self.context = self.engine.create_execution_context()
        self.named = hasattr(self.engine, "num_io_tensors")  # TensorRT >= 8.5
        ios = self._discover_named() if self.named else self._discover_bindings()
        self.inputs = [io for io in ios if io.is_input]
        self.outputs = [io for io in ios if not io.is_input]
        self.ios = ios
        self._stream = self.cuda.stream_create()
        self._start, self._end = self.cuda.event_create(), self.cuda.event_create()
        self._allocate()

    def _discover_named(self):
        trt, engine = self.trt, self.engine
        ios = []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            ios.append(TensorIO(name, index, is_input, shape, numpy_dtype(engine.get_tensor_dtype(name))))
        for io in ios:
            if io.is_input:
                profile = engine.get_tensor_profile_shape(io.name, 0)
                io.min_shape, io.max_shape = tuple(int(d) for d in profile[0]), tuple(int(d) for d in profile[2])
        return ios

    def _discover_bindings(self):
        engine = self.engine
        ios = []
        for index in range(engine.num_bindings):
            shape = tuple(int(d) for d in engine.get_binding_shape(index))
            ios.append(TensorIO(engine.get_binding_name(index), index, engine.binding_is_input(index), shape,
                                numpy_dtype(engine.get_binding_dtype(index))))
        for io in ios:
            if io.is_input:
                profile = engine.get_profile_shape(0, io.index)
                io.min_shape, io.max_shape = tuple(int(d) for d in profile[0]), tuple(int(d) for d in profile[2])
        return ios

    def _set_input_shape(self, io, shape):
        if self.named:
            ok = self.context.set_input_shape(io.name, shape)
        else:
            ok = self.context.set_binding_shape(io.index, shape)
        if ok is False:
            raise DeviceError("input '{}' shape {} is outside the engine's profile (min {}, max {}); rebuild with a "
                              "wider --batch".format(io.name, tuple(shape), io.min_shape, io.max_shape))

    def _output_shape(self, io):
        if self.named:
            return tuple(int(d) for d in self.context.get_tensor_shape(io.name))
        return tuple(int(d) for d in self.context.get_binding_shape(io.index))

    def _allocate(self):
        # Buffers for the profile's max batch: addresses then stay fixed for every call.
        for io in self.inputs:
            self._set_input_shape(io, io.max_shape)
        for io in self.inputs + self.outputs:
            if not io.is_input:
                io.max_shape = self._output_shape(io)
                if any(d < 0 for d in io.max_shape):
                    raise DeviceError("output '{}' has a data-dependent shape {} (e.g. a NonMaxSuppression without a "
                                      "fixed top-K); export it with fixed-shape outputs".format(io.name, io.max_shape))
            nbytes = int(np.prod(io.max_shape)) * np.dtype(io.dtype).itemsize
            io.device = self.cuda.malloc(nbytes)
            io.host = HostBuffer(self.cuda, nbytes)
            self._host_buffers.append(io.host)
        if self.named:
            for io in self.ios:
                self.context.set_tensor_address(io.name, io.device)
        else:
            self._bindings = [io.device for io in sorted(self.ios, key=lambda io: io.index)]

    @property
    def device_memory_bytes(self):
        """Activation memory TensorRT reserves for this engine plus the I/O buffers."""
        # device_memory_size_v2 from 10.x; device_memory_size before (removed in 11; pyCore.cpp per release).
        size = getattr(self.engine, "device_memory_size_v2", None)
        engine_memory = int((size if size is not None else getattr(self.engine, "device_memory_size", 0)) or 0)
        return engine_memory + sum(int(np.prod(io.max_shape)) * np.dtype(io.dtype).itemsize for io in self.ios)

    def infer(self, feed):
        if not isinstance(feed, dict):
            feed = {self.inputs[0].name: feed}
        missing = [io.name for io in self.inputs if io.name not in feed]
        if missing:
            raise DeviceError("the engine needs input(s) {}; got {}".format(missing, sorted(feed)))
        limit = min(io.max_shape[0] for io in self.inputs)
        least = max(io.min_shape[0] for io in self.inputs)
        total = len(feed[self.inputs[0].name])
        if total < least:  # below the profile's minimum (a tail chunk): pad with zeros, cut the padding off
            padded = {}
            for name, array in feed.items():
                padded[name] = np.concatenate([array, np.zeros((least - total,) + array.shape[1:], array.dtype)])
            results = self._run(padded)
            return dict((name, value[:total]) for name, value in results.items())
        if total > limit:
            # Through infer, not _run: the last piece may be below the profile minimum and needs the padding.
            parts = [self.infer(dict((name, array[i:i + limit]) for name, array in feed.items()))
                     for i in range(0, total, limit)]
            return dict((name, np.concatenate([part[name] for part in parts])) for name in parts[0])
        return self._run(feed)

    def _execute(self):
        if self.named:
            ok = self.context.execute_async_v3(self._stream)
        else:
            ok = self.context.execute_async_v2(self._bindings, self._stream)
        if ok is False:
            raise DeviceError("TensorRT failed to run {}: {}".format(_name(self.path),
                                                                    "; ".join(self.logger.errors()[-1:])))

    def _run(self, feed):
        cuda, stream = self.cuda, self._stream
        started = time.perf_counter()
        for io in self.inputs:
            self._set_input_shape(io, tuple(feed[io.name].shape))
        for io in self.inputs:
            array = np.ascontiguousarray(feed[io.name], dtype=io.dtype)
            io.host.view(array.shape, io.dtype)[...] = array
            cuda.memcpy_async(io.device, io.host.address, array.nbytes, MEMCPY_HOST_TO_DEVICE, stream)
        cuda.event_record(self._start, stream)
        self._execute()
        cuda.event_record(self._end, stream)
        shapes = {}
        for io in self.outputs:
            shape = self._output_shape(io)
            shapes[io.name] = shape
            nbytes = int(np.prod(shape)) * np.dtype(io.dtype).itemsize
            cuda.memcpy_async(io.host.address, io.device, nbytes, MEMCPY_DEVICE_TO_HOST, stream)
        cuda.stream_synchronize(stream)
        self.last_timing = (cuda.event_elapsed_ms(self._start, self._end), (time.perf_counter() - started) * 1e3)
        # Copies: the pinned host buffers are overwritten by the next call.
        return dict((io.name, np.array(io.host.view(shapes[io.name], io.dtype), copy=True)) for io in self.outputs)

    def close(self):
        cuda = self.cuda
        for io in getattr(self, "ios", []):
            if io.device:
                cuda.free(io.device)
                io.device = 0
        for buffer in self._host_buffers:
            buffer.free()
        self._host_buffers = []
        for event in (self._start, self._end):
            if event:
                cuda.event_destroy(event)
        if self._stream:
            cuda.stream_destroy(self._stream)
        self._stream = self._start = self._end = 0
        for name in ("context", "engine", "runtime"):
            if hasattr(self, name):
                delattr(self, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OrtModel(object):
    """An ONNX file on onnxruntime's CPU provider: the fallback where TensorRT is missing (it says so)."""

    def __init__(self, path, threads=None):
        try:
            import onnxruntime
        except ImportError:
            raise MissingPiece("neither TensorRT nor onnxruntime is importable here; install TensorRT (JetPack) or "
                               "`pip install onnxruntime` to run the bundle's ONNX files on the CPU") from None
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.path = str(path)
        self.session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.last_timing = None

    def infer(self, feed):
        if not isinstance(feed, dict):
            feed = {self.inputs[0].name: feed}
        started = time.perf_counter()
        values = self.session.run(self.output_names, feed)
        elapsed = (time.perf_counter() - started) * 1e3
        self.last_timing = (elapsed, elapsed)
        return dict(zip(self.output_names, values))

    def close(self):
        self.session = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the bundle -----------------------------------------------------------------------------------------------

class Bundle(object):
    """A deploy bundle made by `edgepipe bundle`: manifest.json lists every file with its sha256."""

    def __init__(self, path):
        self.path = os.path.abspath(str(path))
        manifest_path = os.path.join(self.path, MANIFEST)
        if not os.path.isfile(manifest_path):
            raise DeviceError("{} is not a deploy bundle (no {}); make one with `edgepipe bundle RUN --target "
                              "PROFILE --out DIR`".format(path, MANIFEST))
        try:
            self.manifest = read_json(manifest_path)
        except ValueError as exc:
            raise DeviceError("{}: {} is not valid JSON ({})".format(path, MANIFEST, exc)) from None
        if self.manifest.get("stage") != "bundle":
            raise DeviceError("{} is a '{}' stage, not a deploy bundle".format(path, self.manifest.get("stage")))

    def file(self, relative):
        """A bundle file by its manifest path; never a path that leaves the bundle."""
        full = os.path.realpath(os.path.join(self.path, relative))
        if not (full == os.path.realpath(self.path) or full.startswith(os.path.realpath(self.path) + os.sep)):
            raise DeviceError("bundle {}: {} points outside the bundle; refusing to read it".format(self.path,
                                                                                                   relative))
        return full

    def verify(self):
        """Every listed file present and unchanged, named when not."""
        for entry in self.manifest.get("files") or []:
            path = self.file(entry["path"])
            if not os.path.isfile(path):
                raise DeviceError("bundle {} is missing {} (listed in its manifest.json); copy the whole bundle "
                                  "directory again".format(self.path, entry["path"]))
            if os.path.getsize(path) != entry.get("size_bytes") or sha256_file(path) != entry.get("sha256"):
                raise DeviceError("bundle {}: {} differs from the file bundled (sha256 mismatch); copy the bundle "
                                  "again or rerun `edgepipe bundle`".format(self.path, entry["path"]))
        return self

    def listed(self, relative):
        paths = set(entry["path"] for entry in self.manifest.get("files") or [])
        return self.file(relative) if relative in paths else None

    def build_files(self):
        return {"fp32_onnx": self.listed(EXPORT + "/" + FP32_ONNX),
                "fp16_onnx": self.listed(QUANTIZE + "/" + FP16_ONNX),
                "int8_trt_onnx": self.listed(QUANTIZE + "/" + INT8_TRT_ONNX),
                "calibration_cache": self.listed(QUANTIZE + "/" + CALIB_CACHE)}

    def stage_manifest(self, stage):
        path = os.path.join(self.path, stage, MANIFEST)
        if not os.path.isfile(path):
            return None
        return read_json(path)

    def check_cache(self, cache_path):
        """Refuse a calibration cache recorded for another model than the bundle's model.onnx."""
        quantize = self.stage_manifest(QUANTIZE) or {}
        record = quantize.get("calibration_cache") or {}
        fp32 = self.build_files()["fp32_onnx"]
        if not record or fp32 is None:
            return
        model = sha256_file(fp32)
        if record.get("model_sha256") != model:
            raise DeviceError("calibration cache {} is stale: made for model sha256 {}, this bundle's model is {}; "
                              "rerun `edgepipe quantize` and `edgepipe bundle`".format(
                                  _name(cache_path), str(record.get("model_sha256"))[:12], model[:12]))

    def reference(self):
        """(x, targets, outputs) of the bundled evaluation set: the inputs, what the task scores against (labels;
        the inputs themselves for reconstruction) and the original model's outputs on them (np.load without
        pickle: data only). Bundles made before the task seam store the outputs as "logits"."""
        task = self.task()
        try:
            data = load_arrays_bounded(self.file(REFERENCE_NPZ), "rerun `edgepipe bundle` with fewer --samples")
            x = data["x"]
            outputs = data["outputs"] if "outputs" in data else data["logits"]
            y = data.get("y")
        except DeclaredTooLarge as exc:
            raise DeviceError("bundle {}: {}".format(self.path, exc)) from None
        except (ValueError, KeyError, OSError, TypeError, AttributeError) as exc:
            raise DeviceError("bundle {}: {} is not a valid evaluation set ({})".format(self.path, REFERENCE_NPZ,
                                                                                      exc)) from None
        targets = task.targets(x.astype(np.float32), y)
        if targets is None or not len(x) == len(targets) == len(outputs):
            raise DeviceError("bundle {}: {} holds {} inputs, {} targets and {} reference outputs; rerun `edgepipe "
                              "bundle`".format(self.path, REFERENCE_NPZ, len(x),
                                               "no" if targets is None else len(targets), len(outputs)))
        return x.astype(np.float32), targets, outputs.astype(np.float32)

    def task(self):
        """The bundled model's task (classification when the bundle predates the record)."""
        record = self.manifest.get("task") or {}
        name = record.get("name", "classification") if isinstance(record, dict) else "classification"
        if name not in TASK_SCORES:
            raise DeviceError("bundle {}: task {!r} is not one this runtime scores ({}); use the edgepipe release "
                              "that made the bundle".format(self.path, name, ", ".join(sorted(TASK_SCORES))))
        std = ((self.manifest.get("dataset") or {}).get("preprocessing") or {}).get("std")
        return TASK_SCORES[name](std)

    def labels(self):
        return list((self.manifest.get("dataset") or {}).get("labels") or [])

    def onnx_artifacts(self):
        """(name, precision, path) of every ONNX file the bundle's stage manifests list, as `edgepipe eval` names
        them (export first, then quantize)."""
        found = []
        for stage in (EXPORT, QUANTIZE):
            manifest = self.stage_manifest(stage) or {}
            for entry in manifest.get("artifacts") or []:
                if entry.get("format") != "onnx":
                    continue
                path = self.listed(stage + "/" + entry["file"])
                if path is not None:
                    found.append((entry["name"], entry.get("precision", "fp32"), path))
        return found

    def engines(self):
        """(name, precision, path, settings) of every engine built in the bundle (build-*/manifest.json)."""
        found = []
        for directory in sorted(os.listdir(self.path)):
            manifest_path = os.path.join(self.path, directory, MANIFEST)
            if not directory.startswith(BUILD + "-") or not os.path.isfile(manifest_path):
                continue
            manifest = read_json(manifest_path)
            settings = (manifest.get("config") or {}).get("settings") or {}
            for entry in manifest.get("artifacts") or []:
                if entry.get("format") == "engine":
                    path = self.file(directory + "/" + entry["file"])
                    if os.path.isfile(path):
                        found.append((entry["name"], entry.get("precision", "fp32"), path, settings))
        return found

    def check_device(self, device):
        """Refuse a GPU of another compute capability than the bundle's target (its ONNX files were checked for
        that target's TensorRT and layers only)."""
        target = self.manifest.get("target") or {}
        wanted = str(target.get("sm", "")).replace("sm_", "")
        major, minor = device["compute_capability"]
        here = "{}{}".format(major, minor)
        if wanted and wanted != here:
            raise DeviceError("this bundle was made for {} ({}); this GPU is {} (sm_{}): rerun `edgepipe bundle RUN "
                              "--target PROFILE` for this device (`edgepipe targets` lists them)".format(
                                  target.get("name"), target.get("sm"), device["name"], here))


# --- commands -------------------------------------------------------------------------------------------------

def parse_batch(text):
    try:
        values = [int(part) for part in str(text).split(":")]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise DeviceError("--batch {!r} must be MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX (e.g. 1:16:64)".format(text))
    return tuple(values)


def engine_file(precision):
    return "model.{}.engine".format(precision)


def find_trtexec():
    if os.path.isfile(TRTEXEC) and os.access(TRTEXEC, os.X_OK):
        return TRTEXEC
    return shutil.which("trtexec")


def _trtexec_build(bundle, settings, out_dir):
    """Build with trtexec from the bundle's recorded command lines (the Python bindings are missing).

    Returns (engine path, the command record, the ONNX it built from). The batch profile and workspace are
    applied to the recorded line; DLA and timing caches need the Python path (refused in one line).
    """
    precision = settings.precision
    trtexec = find_trtexec()
    if trtexec is None:
        raise MissingPiece("neither TensorRT's Python bindings nor trtexec are here ({} or on PATH); install JetPack's "
                           "TensorRT (`sudo apt install tensorrt`)".format(TRTEXEC))
    if settings.dla_core is not None or settings.timing_cache is not None:
        raise DeviceError("--dla-core and --timing-cache need TensorRT's Python bindings (trtexec is used only "
                          "without them); install python3-libnvinfer or run the bundle's trtexec lines by hand")
    commands = [c for c in bundle.manifest.get("trtexec") or [] if c.get("precision") == precision
                and "DLA" not in c.get("how", "")]
    if not commands:
        raise DeviceError("the bundle lists no trtexec command for {}; it can build {}".format(
            precision, ", ".join(bundle.manifest.get("precisions") or [])))
    try:
        probe = subprocess.run([trtexec, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeviceError("{} does not run ({})".format(trtexec, exc)) from None
    number = _trtexec_version_number(probe.stdout)
    if number is None:
        raise DeviceError("{} did not print its TensorRT version ('[TensorRT vNNNN]' in its --help banner); run "
                          "the bundle's trtexec lines by hand (README.md)".format(trtexec))
    release = _release_of_number(number)
    command = _command_for_release(commands, release)
    argv = _apply_settings(command["command"].split(), settings)
    argv[0] = trtexec
    engine = engine_file(precision)
    onnx = None
    for index, arg in enumerate(argv):
        if arg.startswith("--saveEngine="):
            argv[index] = "--saveEngine=" + os.path.join(out_dir, engine)
        elif arg.startswith("--onnx="):
            onnx = bundle.file(arg.split("=", 1)[1])
        elif arg.startswith("--calib="):
            # The cache's header must name this very release or TensorRT ignores it (see with_running_header).
            cache = bundle.file(arg.split("=", 1)[1])
            bundle.check_cache(cache)
            served = os.path.join(out_dir, CALIB_CACHE)
            header = "TRT-{}-{}".format(number, CACHE_ALGORITHM).encode()
            write_bytes_atomic(served, header + b"\n" + read_cache(cache).partition(b"\n")[2])
            argv[index] = "--calib=" + served
    say("build: TensorRT's Python bindings are missing; running trtexec for TensorRT {}.{} ({}): {}".format(
        release[0], release[1], command["how"], " ".join(argv)))
    result = subprocess.run(argv, cwd=bundle.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    if result.returncode != 0:
        tail = [line for line in result.stdout.splitlines() if "ERROR" in line or "Error" in line][-2:]
        raise DeviceError("trtexec failed (exit {}): {}".format(result.returncode, "; ".join(tail) or "see its log"))
    if os.path.exists(os.path.join(out_dir, CALIB_CACHE)):
        os.remove(os.path.join(out_dir, CALIB_CACHE))
    return os.path.join(out_dir, engine), command, onnx


def _apply_settings(argv, settings):
    """The recorded line with this build's batch profile and workspace."""
    out = []
    for arg in argv:
        for kind, batch in zip(("--minShapes=", "--optShapes=", "--maxShapes="), settings.batch):
            if arg.startswith(kind):
                name, _, dims = arg[len(kind):].rpartition(":")
                arg = "{}{}:{}".format(kind, name, "x".join([str(batch)] + dims.split("x")[1:]))
        if arg.startswith("--workspace="):
            arg = "--workspace={}".format(settings.workspace_mib)
        elif arg.startswith("--memPoolSize=workspace:"):
            arg = "--memPoolSize=workspace:{}".format(settings.workspace_mib)
        out.append(arg)
    return out


def _trtexec_version_number(text):
    """8502 from trtexec's banner "[TensorRT v8502]" (100300 for 10.3.0), or None."""
    marker = "[TensorRT v"
    if marker not in text:
        return None
    digits = text.split(marker, 1)[1].split("]", 1)[0]
    return int(digits) if digits.isdigit() else None


def _release_of_number(number):
    """(8, 5) from 8502, (10, 3) from 100300: major*1000+minor*100+patch up to 9.x, major*10000+... from 10.0."""
    return (number // 10000, number // 100 % 100) if number >= 100000 else (number // 1000, number // 100 % 10)


def _trtexec_release(text):
    number = _trtexec_version_number(text)
    return None if number is None else _release_of_number(number)


def _command_for_release(commands, release):
    """The recorded line for this release; on TensorRT 8 the calibration-cache line first, as plan_build does."""
    def covers(text):
        if text.startswith("11"):
            return release[0] >= 11
        if text.startswith("8.0"):
            return release < (8, 4)
        return (8, 4) <= release < (11, 0)
    matching = [c for c in commands if covers(c.get("tensorrt", ""))]
    if not matching:
        families = ", ".join(sorted(set(c.get("tensorrt", "?") for c in commands)))
        raise DeviceError("the bundle's trtexec lines are for TensorRT {}, not {}.{}; rerun `edgepipe bundle` for "
                          "this device's release".format(families, release[0], release[1]))
    if release[0] == 8:
        matching.sort(key=lambda c: "calibration cache" not in c.get("how", ""))
    return matching[0]


def command_build(args):
    bundle = Bundle(args.bundle).verify()
    trt, reason = load_tensorrt()
    precisions = bundle.manifest.get("precisions") or list(PRECISIONS)
    precision = precisions[0] if args.precision == "best" else args.precision
    if precision not in precisions:
        raise DeviceError("this bundle cannot build {} for {}; it can build {}".format(
            precision, (bundle.manifest.get("target") or {}).get("name"), ", ".join(precisions)))
    out_dir = os.path.join(bundle.path, "{}-{}".format(BUILD, precision))
    settings = BuildSettings(precision, workspace_mib=args.workspace, dla_core=args.dla_core,
                             gpu_fallback=args.gpu_fallback, batch=parse_batch(args.batch),
                             timing_cache=args.timing_cache)
    if settings.dla_core is not None and settings.batch[0] != settings.batch[2]:
        raise DeviceError("DLA needs a static batch; use --batch {0}:{0}:{0}".format(settings.batch[1]))
    if settings.gpu_fallback and settings.dla_core is None:
        raise DeviceError("--gpu-fallback only applies to DLA builds; add --dla-core N or drop it")
    tmp_dir = out_dir + ".tmp-{}".format(os.getpid())
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    try:
        if trt is None:
            say("build: {}".format(reason))
            engine_path, command, onnx_path = _trtexec_build(bundle, settings, tmp_dir)
            record = {"built_by": "trtexec", "command": command["command"], "how": command["how"]}
        else:
            device = cuda_device()
            if device is None:
                raise MissingPiece("TensorRT {} is installed but no CUDA GPU is visible".format(trt.__version__))
            bundle.check_device(device)
            check_release_supports(trt, settings)
            plan = plan_build(bundle.build_files(), precision, tensorrt_version(trt)[0], where=bundle.path,
                              check_cache=bundle.check_cache)
            say("build: {} ({})".format(plan.reason, trt.__version__))
            result = build_serialized_engine(trt, plan, settings)
            engine_path = os.path.join(tmp_dir, engine_file(precision))
            write_bytes_atomic(engine_path, result["engine"])
            with open(engine_path, "rb") as handle:
                check_engine_deserializes(trt, handle.read(), settings.to_json())
            record = {"built_by": "edgepipe_device", "plan": plan.reason, "applied": result["applied"],
                      "input": {"name": result["input_name"], "shape": list(result["input_shape"])},
                      "machine": {"tensorrt": trt.__version__, "gpu": device["name"],
                                  "compute_capability": "{}.{}".format(*device["compute_capability"])}}
            onnx_path = plan.onnx
        manifest = {"stage": BUILD, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "config": dict(record, source=bundle.path, precision=precision, settings=settings.to_json(),
                                   onnx=str(onnx_path), runtime="edgepipe_device " + RUNTIME_VERSION),
                    "parents": {"onnx": sha256_file(onnx_path)},
                    "artifacts": [{"name": "tensorrt-" + precision, "file": engine_file(precision), "format": "engine",
                                   "precision": precision, "sha256": sha256_file(engine_path),
                                   "size_bytes": os.path.getsize(engine_path), "backend": "tensorrt"}],
                    "metrics": {}}
        write_bytes_atomic(os.path.join(tmp_dir, MANIFEST), json.dumps(manifest, indent=2).encode("utf-8"))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.rename(tmp_dir, out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    emit(os.path.join(out_dir, engine_file(precision)))
    return 0


def _open_subjects(bundle, threads=None):
    """What eval / bench / infer run: the bundle's engines on TensorRT, else its ONNX files on onnxruntime."""
    trt, reason = load_tensorrt()
    engines = bundle.engines()
    if trt is not None and engines:
        device = cuda_device()
        if device is None:
            raise MissingPiece("TensorRT {} is installed but no CUDA GPU is visible".format(trt.__version__))
        return [(name, precision, "tensorrt", lambda p=path, s=settings: Engine(p, s, trt=trt))
                for name, precision, path, settings in engines], None
    why = reason if trt is None else "no engine built in the bundle yet (run `build` first)"
    subjects = [(name, precision, "onnxruntime-cpu", lambda p=path: OrtModel(p, threads))
                for name, precision, path in bundle.onnx_artifacts()]
    return subjects, "TensorRT engines not run: {}; evaluating the bundle's ONNX files on onnxruntime's CPU " \
                     "provider instead".format(why)


def infer_in_batches(model, x, batch_size):
    outputs = None
    for start in range(0, len(x), batch_size):
        result = model.infer(x[start:start + batch_size])
        if outputs is None:
            outputs = dict((name, []) for name in result)
        for name, value in result.items():
            outputs[name].append(value)
    return dict((name, np.concatenate(values)) for name, values in outputs.items())


# A task's score, per sample, and how two models' outputs agree: the numeric core that `edgepipe eval` on the
# workstation (edgepipe.tasks) and this file's eval share, so a Jetson's verdict and the workstation's agree.
def evaluate_bundle(bundle, batch_size=256, threads=None):
    """The eval report of the bundle's engines (or ONNX files): the task's score, drop, agreement vs the stored
    outputs."""
    x, targets, reference = bundle.reference()
    task = bundle.task()
    budget = float(bundle.manifest.get("max_drop", bundle.manifest.get("max_accuracy_drop", 0.5)))
    original = task.score(reference, targets)
    rows = [{"name": "original", "precision": "fp32", "backend": "torch (recorded when bundled)",
             "score": original, "drop": 0.0, "agreement": task.agreement(reference, reference),
             "max_abs_diff": 0.0}]
    subjects, note = _open_subjects(bundle, threads)
    if note:
        say("eval: " + note)
    for name, precision, backend, opener in subjects:
        with opener() as model:
            outputs = infer_in_batches(model, x, batch_size)
        candidate = model_outputs(outputs).astype(np.float32)
        if candidate.shape != reference.shape:
            raise DeviceError("{} returns outputs of shape {}; the bundle's reference outputs are {}: it is not the "
                              "bundled model".format(name, candidate.shape, reference.shape))
        score = task.score(candidate, targets)
        drop = round(task.drop(original, score), 4)
        rows.append({"name": name, "precision": precision, "backend": backend, "score": score,
                     "drop": drop, "within_budget": drop <= budget,
                     "agreement": task.agreement(candidate, reference),
                     "max_abs_diff": float(np.abs(candidate - reference).max())})
    failed = [row["name"] for row in rows if row.get("within_budget") is False]
    return {"bundle": bundle.path, "samples": int(len(x)), "task": {"name": task.name, "metric": task.metric,
            "unit": task.unit}, "max_drop": budget, "artifacts": rows, "passed": not failed, "failed": failed,
            "note": note}


def _table(rows, columns):
    header = [title for title, _ in columns]
    body = [[fmt(row) for _, fmt in columns] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in body]
    return "\n".join(lines)


def command_eval(args):
    bundle = Bundle(args.bundle).verify()
    report = evaluate_bundle(bundle, batch_size=args.batch_size, threads=args.threads)
    unit = report["task"]["unit"]
    if report["task"]["name"] == "classification":
        score_column = ("top-1", lambda r: "{:.2%}".format(r["score"]))
        agreement = ("agreement", lambda r: "{:.2%}".format(r["agreement"]))
    elif report["task"]["name"] == "detection":  # mAP in points, agreement as same class at IoU >= 0.5
        score_column = ("mAP@0.5", lambda r: "{:.2f}".format(100 * r["score"]))
        agreement = ("box agreement", lambda r: "{:.2%}".format(r["agreement"]))
    else:  # reconstruction: PSNR, and agreement as the PSNR between an artifact's output and the original's
        score_column = ("PSNR", lambda r: "{:.2f} dB".format(r["score"]))
        agreement = ("vs original", lambda r: "{:.1f} dB".format(r["agreement"]))
    emit(_table(report["artifacts"], [
        ("artifact", lambda r: r["name"]), ("precision", lambda r: r["precision"]),
        ("backend", lambda r: r["backend"]), score_column,
        ("drop ({})".format(unit), lambda r: "{:+.2f}".format(r["drop"])), agreement,
        ("budget", lambda r: "-" if "within_budget" not in r else ("ok" if r["within_budget"] else "OVER"))]))
    verdict = "passed" if report["passed"] else "FAILED: {} over the {} {} budget".format(
        ", ".join(report["failed"]), report["max_drop"], unit)
    emit("eval on {} bundled samples: {}".format(report["samples"], verdict))
    if args.json:
        write_bytes_atomic(args.json, json.dumps(report, indent=2).encode())
    return 0 if report["passed"] else 1


def _pick(bundle, name, threads=None):
    subjects, note = _open_subjects(bundle, threads)
    if note:
        say(note)
    if not subjects:
        raise DeviceError("bundle {} holds nothing to run".format(bundle.path))
    if name is None:
        return subjects[0]
    for subject in subjects:
        if subject[0] == name:
            return subject
    raise DeviceError("no artifact {!r} here; choose one of {}".format(name, ", ".join(s[0] for s in subjects)))


def _softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def command_infer(args):
    bundle = Bundle(args.bundle).verify()
    try:
        data = load_arrays_bounded(args.input, "infer fewer samples at a time")
    except DeclaredTooLarge as exc:
        raise DeviceError(str(exc)) from None
    except (ValueError, OSError) as exc:
        raise DeviceError("{} is not a .npy array ({}); save the preprocessed inputs with numpy.save".format(
            args.input, exc)) from None
    if isinstance(data, dict):  # an .npz: its first array
        if not data:
            raise DeviceError("{} holds no arrays".format(args.input))
        data = next(iter(data.values()))
    sample_shape = tuple((bundle.manifest.get("model") or {}).get("input_shape") or ())
    x = np.asarray(data, np.float32)
    if sample_shape and x.shape == sample_shape:
        x = x[None]
    if sample_shape and x.shape[1:] != sample_shape:
        raise DeviceError("{} has shape {}; the model takes {} per sample (N x {})".format(
            args.input, x.shape, sample_shape, " x ".join(str(d) for d in sample_shape)))
    name, precision, backend, opener = _pick(bundle, args.artifact)
    with opener() as model:
        outputs = model.infer(x)
    first = model_outputs(outputs)
    task = bundle.task()
    results = []
    if task.name == "detection":  # the confident boxes, in the model input's pixels
        labels = bundle.labels()
        for index, rows in enumerate(first):
            shown = rows[(rows[:, 5] >= 0) & (rows[:, 4] >= DISPLAY_SCORE)]
            found = [{"class": int(row[5]), "label": labels[int(row[5])] if int(row[5]) < len(labels)
                      else str(int(row[5])), "score": float(row[4]), "box": [float(v) for v in row[:4]]}
                     for row in shown]
            results.append({"index": index, "detections": found})
            emit("{:>4}  {}".format(index, "  ".join("{} {:.2f} [{:.0f} {:.0f} {:.0f} {:.0f}]".format(
                d["label"], d["score"], *d["box"]) for d in found) or "no detection"))
    elif task.name == "reconstruction":  # how close each reconstruction is to its input
        for index, value in enumerate(task.per_sample(first, x)):
            results.append({"index": index, "psnr_db": float(value)})
            emit("{:>4}  reconstruction PSNR {:.2f} dB".format(index, float(value)))
    else:
        labels = bundle.labels()
        for index, row in enumerate(_softmax(first.astype(np.float64))):
            top = np.argsort(-row)[:args.top]
            predictions = [{"class": int(k), "label": labels[k] if k < len(labels) else str(k),
                            "probability": float(row[k])} for k in top]
            results.append({"index": index, "top": predictions})
            emit("{:>4}  {}".format(index, "  ".join("{} {:.1%}".format(p["label"], p["probability"])
                                                      for p in predictions)))
    say("infer: {} ({}, {})".format(name, precision, backend))
    if args.json:
        write_bytes_atomic(args.json, json.dumps({"artifact": name, "backend": backend, "results": results},
                                                 indent=2).encode())
    return 0


def bench_model(model, batch, seconds, warmup=10, min_iters=50):
    for _ in range(warmup):
        model.infer(batch)
    host, compute = [], []
    started = time.perf_counter()
    while len(host) < min_iters or time.perf_counter() - started < seconds:
        model.infer(batch)
        compute.append(model.last_timing[0])
        host.append(model.last_timing[1])
    host, compute = np.asarray(host), np.asarray(compute)
    return {"batch": int(len(batch)), "iterations": int(len(host)),
            "p50_ms": float(np.percentile(host, 50)), "p90_ms": float(np.percentile(host, 90)),
            "p99_ms": float(np.percentile(host, 99)), "compute_p50_ms": float(np.percentile(compute, 50)),
            "throughput_per_s": float(len(batch) / (np.percentile(host, 50) / 1000.0))}


def command_bench(args):
    bundle = Bundle(args.bundle).verify()
    x, _, _ = bundle.reference()
    batch = np.resize(x, (args.batch,) + x.shape[1:]).astype(np.float32)
    subjects, note = _open_subjects(bundle, args.threads)
    if note:
        say("bench: " + note)
    rows = []
    for name, precision, backend, opener in subjects:
        if args.artifact and name != args.artifact:
            continue
        cuda = cudart() if backend == "tensorrt" else None
        free_before = cuda.mem_get_info()[0] if cuda else None
        with opener() as model:
            row = bench_model(model, batch, args.seconds)
            if cuda:
                # What this engine took from the device (cudaMemGetInfo before and while it is loaded; on a Jetson
                # the CPU shares that memory), and what TensorRT says it needs for activations plus I/O buffers.
                row["device_memory_bytes"] = int(free_before - cuda.mem_get_info()[0])
                row["engine_memory_bytes"] = int(model.device_memory_bytes)
        row.update(name=name, precision=precision, backend=backend)
        rows.append(row)
    emit(_table(rows, [
        ("artifact", lambda r: r["name"]), ("backend", lambda r: r["backend"]), ("batch", lambda r: str(r["batch"])),
        ("p50 ms", lambda r: "{:.3f}".format(r["p50_ms"])), ("p90 ms", lambda r: "{:.3f}".format(r["p90_ms"])),
        ("p99 ms", lambda r: "{:.3f}".format(r["p99_ms"])),
        ("compute p50", lambda r: "{:.3f}".format(r["compute_p50_ms"])),
        ("samples/s", lambda r: "{:.0f}".format(r["throughput_per_s"])),
        ("device MiB", lambda r: "-" if "device_memory_bytes" not in r else "{:.1f}".format(
            r["device_memory_bytes"] / 2.0 ** 20))]))
    if args.json:
        write_bytes_atomic(args.json, json.dumps({"bundle": bundle.path, "rows": rows}, indent=2).encode())
    return 0


# --- serving: Triton model repository and DeepStream nvinfer config -------------------------------------------

# numpy type -> Triton DataType (triton-inference-server/common protobuf/model_config.proto).
_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int8": "TYPE_INT8", "int32": "TYPE_INT32",
                 "int64": "TYPE_INT64", "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8"}
# nvinfer network-mode per precision (DeepStream Gst-nvinfer docs: 0 FP32, 1 INT8, 2 FP16).
_NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}


def _built_engine(bundle, precision):
    engines = [e for e in bundle.engines() if precision in (None, e[1])]
    if not engines:
        wanted = precision or "any precision"
        raise DeviceError("no engine ({}) built in {} yet; run `python3 edgepipe_device.py build {}` first".format(
            wanted, bundle.path, bundle.path))
    order = dict((p, i) for i, p in enumerate(PRECISIONS))
    return sorted(engines, key=lambda e: order.get(e[1], len(order)))[0]


def _engine_io(path, settings):
    """[(name, is_input, dtype name, shape, min batch, max batch)] of a built engine, read from the engine."""
    with Engine(path, settings) as loaded:
        return [(io.name, io.is_input, np.dtype(io.dtype).name, io.shape,
                 io.min_shape[0] if io.min_shape else None, io.max_shape[0] if io.max_shape else None)
                for io in loaded.ios]


def triton_config(name, ios, dla_core=None, max_queue_delay_us=100, labels=None):
    """config.pbtxt (protobuf text of inference.ModelConfig) for a TensorRT plan with a dynamic batch axis."""
    inputs = [io for io in ios if io[1]]
    min_batch, max_batch = max(io[4] for io in inputs), min(io[5] for io in inputs)
    static = min_batch == max_batch and max_batch > 1  # DLA: a static batch Triton must not split
    if min_batch > 1 and not static:
        raise DeviceError("the engine's profile starts at batch {} but Triton's dynamic batcher sends any batch from "
                          "1 up; build with --batch 1:OPT:MAX (or a static batch N:N:N)".format(min_batch))
    lines = ['name: "{}"'.format(name), 'platform: "tensorrt_plan"',
             "max_batch_size: {}".format(0 if static else max_batch)]

    def tensor(io, kind):
        dims = list(io[3]) if static else list(io[3][1:])
        dims = [max_batch if (static and i == 0 and d < 0) else d for i, d in enumerate(dims)]
        if io[2] not in _TRITON_TYPES:
            raise DeviceError("tensor {} has type {}, which Triton's config has no name for".format(io[0], io[2]))
        fields = ['name: "{}"'.format(io[0]), "data_type: {}".format(_TRITON_TYPES[io[2]]),
                  "dims: [ {} ]".format(", ".join(str(d) for d in dims))]
        if kind == "output" and labels:
            fields.append('label_filename: "{}"'.format(labels))
        return "  {\n    " + "\n    ".join(fields) + "\n  }"

    lines.append("input [\n" + ",\n".join(tensor(io, "input") for io in inputs) + "\n]")
    lines.append("output [\n" + ",\n".join(tensor(io, "output") for io in ios if not io[1]) + "\n]")
    if not static:
        preferred = sorted(set(b for b in (min(max_batch, 16), max_batch) if b >= 1))
        lines.append("dynamic_batching {{\n  preferred_batch_size: [ {} ]\n  max_queue_delay_microseconds: {}\n}}"
                     .format(", ".join(str(b) for b in preferred), int(max_queue_delay_us)))
    group = ["    kind: KIND_GPU", "    count: 1"]
    if dla_core is not None:  # Triton runs a DLA engine on the GPU instance with the DLA as its secondary device
        group.append("    secondary_devices [ {{ kind: KIND_NVDLA device_id: {} }} ]".format(int(dla_core)))
    lines.append("instance_group [\n  {\n" + "\n".join(group) + "\n  }\n]")
    return "\n".join(lines) + "\n"


def command_triton(args):
    """BUNDLE/model_repository/NAME/{config.pbtxt, 1/model.plan, labels.txt} from an engine built here."""
    bundle = Bundle(args.bundle).verify()
    name, precision, engine_path, settings = _built_engine(bundle, args.precision)
    model = args.name or "{}_{}".format(bundle.manifest.get("recipe_name") or "model", precision).replace("-", "_")
    ios = _engine_io(engine_path, settings)
    labels = bundle.labels()
    root = os.path.abspath(args.out or os.path.join(bundle.path, "model_repository"))
    model_dir = os.path.join(root, model)
    tmp = model_dir + ".tmp-{}".format(os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "1"))
    try:
        shutil.copyfile(engine_path, os.path.join(tmp, "1", "model.plan"))
        if labels:
            write_bytes_atomic(os.path.join(tmp, LABELS_TXT), ("\n".join(labels) + "\n").encode("utf-8"))
        text = triton_config(model, ios, settings.get("dla_core"), args.max_queue_delay_us,
                             LABELS_TXT if labels else None)
        write_bytes_atomic(os.path.join(tmp, "config.pbtxt"), text.encode("utf-8"))
        shutil.rmtree(model_dir, ignore_errors=True)
        os.rename(tmp, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(os.path.join(model_dir, "config.pbtxt"))
    say("triton: {} ({}) -> {}; serve with `tritonserver --model-repository={}` on a Triton built for this "
        "device's TensorRT release (a plan only loads on the release that built it)".format(
            name, precision, model_dir, root))
    return 0


def deepstream_config(bundle, precision, engine_path, ios, settings, config_path, labels_path):
    """A Gst-nvinfer [property] group (DeepStream docs, "Gst-nvinfer File Configuration Specifications")."""
    prep = (bundle.manifest.get("dataset") or {}).get("preprocessing") or {}
    if prep.get("kind") != "image":
        raise DeviceError("DeepStream feeds video frames; this model was not trained on images ({})".format(
            prep.get("kind", "no preprocessing recorded")))
    scale, mean, std = float(prep["scale"]), [float(m) for m in prep["mean"]], [float(s) for s in prep["std"]]
    channels = int(prep["channels"])
    # nvinfer computes y = net-scale-factor * (x - offsets) on 0-255 pixels, one factor for all channels; the
    # model wants (x * scale - mean) / std per channel, so factor = scale / std and offsets = mean / scale.
    factor = scale / (sum(std) / len(std))
    lines = ["# edgepipe: nvinfer config for {} ({}), made by edgepipe_device.py deepstream".format(
        bundle.manifest.get("recipe_name"), precision)]
    if max(std) - min(std) > 1e-3 * max(std):
        lines.append("# std differs per channel ({}): nvinfer applies one net-scale-factor (their mean); for exact "
                     "per-channel normalization use nvdspreprocess".format(", ".join("{:.4f}".format(s) for s in std)))
    if prep.get("resize"):
        # nvinfer scales the whole frame (or object) to the network size; it cannot resize the shorter side and
        # crop the centre as this model was evaluated. Said in the config and on the terminal, not hidden.
        warning = ("this model was evaluated on the centre {}x{} crop of images resized to {} on the shorter side; "
                   "nvinfer stretches the whole frame to {}x{} instead, so its accuracy can differ from the bundle's "
                   "eval (crop in an nvdspreprocess ROI, or train with dataset.resize unset)").format(
                       prep["size"][0], prep["size"][1], prep["resize"], prep["size"][0], prep["size"][1])
        lines.append("# WARNING: " + warning)
        say("deepstream: warning: " + warning)
    files = bundle.build_files()
    outputs = [io[0] for io in ios if not io[1]]
    batch = min(io[5] for io in ios if io[1])
    # nvinfer resolves paths against the config file's directory.
    lines.append("# the model outputs logits, not probabilities: classifier-threshold sits below any logit, so "
                 "nvinfer reports the argmax class")

    def where(path):
        return os.path.relpath(path, os.path.dirname(config_path))

    props = [("gpu-id", 0), ("net-scale-factor", repr(factor)),
             ("offsets", ";".join(repr(m / scale) for m in mean)),
             ("model-color-format", 2 if channels == 1 else 0),  # 0 RGB, 1 BGR, 2 GRAY
             ("model-engine-file", where(engine_path)), ("labelfile-path", where(labels_path)),
             ("batch-size", batch), ("network-mode", _NETWORK_MODES[precision]),
             ("network-type", 1),  # classifier
             ("process-mode", 1), ("gie-unique-id", 1), ("interval", 0), ("classifier-threshold", -1e30),
             ("output-blob-names", ";".join(outputs))]
    if files["fp32_onnx"] is not None:  # lets nvinfer rebuild the engine itself if the plan does not load
        props.insert(4, ("onnx-file", where(files["fp32_onnx"])))
    if precision == "int8" and files["calibration_cache"] is not None:
        props.append(("int8-calib-file", where(files["calibration_cache"])))
    if settings.get("dla_core") is not None:
        props += [("enable-dla", 1), ("use-dla-core", int(settings["dla_core"]))]
    return "\n".join(lines + ["[property]"] + ["{}={}".format(k, v) for k, v in props]) + "\n"


def command_deepstream(args):
    bundle = Bundle(args.bundle).verify()
    task = bundle.task()
    if task.name != "classification":  # nvinfer's classifier config; other tasks need their own parser
        raise DeviceError("deepstream: this bundle's model is a {} model; the nvinfer config written here is for "
                          "classifiers only".format(task.name))
    name, precision, engine_path, settings = _built_engine(bundle, args.precision)
    out = os.path.abspath(args.out or os.path.join(bundle.path, "deepstream_nvinfer_{}.txt".format(precision)))
    # nvinfer's label file for a classifier: one line per output layer, its classes separated by ';'.
    labels_path = os.path.join(os.path.dirname(out), "deepstream_labels.txt")
    text = deepstream_config(bundle, precision, engine_path, _engine_io(engine_path, settings), settings, out,
                             labels_path)
    write_bytes_atomic(labels_path, (";".join(bundle.labels()) + "\n").encode("utf-8"))
    write_bytes_atomic(out, text.encode("utf-8"))
    emit(out)
    return 0


def doctor_report():
    """What this machine offers the runtime: Python, numpy, TensorRT, the CUDA runtime, the GPU, trtexec."""
    trt, why = load_tensorrt()
    try:
        cuda = cudart()
        devices, cuda_why = cuda.device_count(), ""
    except MissingPiece as exc:
        devices, cuda_why = 0, str(exc)
    device = cuda_device() if devices else None
    try:
        import onnxruntime  # noqa: F401 - only whether it is there
        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    return {"python": sys.version.split()[0], "numpy": np.__version__,
            "tensorrt": trt.__version__ if trt is not None else None, "tensorrt_why": why,
            "cuda_devices": devices, "cuda_why": cuda_why,
            "gpu": None if device is None else {"name": device["name"], "sm": "sm_{}{}".format(
                *device["compute_capability"]), "memory_mib": device["total_memory_mib"]},
            "jetson": jetson_model(), "trtexec": find_trtexec(), "onnxruntime": ort}


def command_doctor(args):
    report = doctor_report()
    rows = [("Python", report["python"]), ("numpy", report["numpy"]),
            ("TensorRT", report["tensorrt"] or "missing: " + report["tensorrt_why"]),
            ("CUDA runtime", "{} device(s)".format(report["cuda_devices"]) if not report["cuda_why"]
             else report["cuda_why"]),
            ("GPU", "-" if report["gpu"] is None else "{name} ({sm}, {memory_mib} MiB)".format(**report["gpu"])),
            ("Jetson", report["jetson"] or "-"), ("trtexec", report["trtexec"] or "not found"),
            ("onnxruntime", report["onnxruntime"] or "not installed (only needed without TensorRT)")]
    emit(_table([{"what": k, "found": v} for k, v in rows], [("what", lambda r: r["what"]),
                                                                 ("found", lambda r: str(r["found"]))]))
    if args.json:
        write_bytes_atomic(args.json, json.dumps(report, indent=2).encode())
    return 0


def make_parser():
    cli = argparse.ArgumentParser(prog="edgepipe_device.py", description="Build, check and run an edgepipe "
                                     "deploy bundle with TensorRT and numpy only.")
    commands = cli.add_subparsers(dest="command")
    build = commands.add_parser("build", help="build a TensorRT engine from the bundle for this device")
    build.add_argument("bundle")
    build.add_argument("--precision", default="best", choices=("best",) + PRECISIONS)
    build.add_argument("--batch", default="1:16:64", help="MIN:OPT:MAX of the optimization profile")
    build.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MIB, help="MiB")
    build.add_argument("--dla-core", type=int, default=None)
    build.add_argument("--gpu-fallback", action="store_true")
    build.add_argument("--timing-cache", default=None)
    evaluate = commands.add_parser("eval", help="accuracy, drop and agreement vs the stored reference outputs")
    evaluate.add_argument("bundle")
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--threads", type=int, default=None)
    evaluate.add_argument("--json", default=None)
    infer = commands.add_parser("infer", help="predict preprocessed inputs saved with numpy.save")
    infer.add_argument("bundle")
    infer.add_argument("input")
    infer.add_argument("--artifact", default=None)
    infer.add_argument("--top", type=int, default=3)
    infer.add_argument("--json", default=None)
    bench = commands.add_parser("bench", help="latency percentiles, throughput and device memory")
    bench.add_argument("bundle")
    bench.add_argument("--artifact", default=None)
    bench.add_argument("--batch", type=int, default=1)
    bench.add_argument("--seconds", type=float, default=3.0)
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--json", default=None)
    triton = commands.add_parser("triton", help="a Triton model repository around an engine built here")
    triton.add_argument("bundle")
    triton.add_argument("--precision", default=None, choices=PRECISIONS)
    triton.add_argument("--name", default=None)
    triton.add_argument("--out", default=None, help="model repository root (default BUNDLE/model_repository)")
    triton.add_argument("--max-queue-delay-us", type=int, default=100)
    deepstream = commands.add_parser("deepstream", help="a DeepStream Gst-nvinfer config for an engine built here")
    deepstream.add_argument("bundle")
    deepstream.add_argument("--precision", default=None, choices=PRECISIONS)
    deepstream.add_argument("--out", default=None)
    doctor = commands.add_parser("doctor", help="what this machine offers: Python, numpy, TensorRT, CUDA, trtexec")
    doctor.add_argument("--json", default=None)
    return cli


COMMANDS = {"build": command_build, "eval": command_eval, "infer": command_infer, "bench": command_bench,
            "triton": command_triton, "deepstream": command_deepstream, "doctor": command_doctor}


def main(argv=None):
    args = make_parser().parse_args(argv)
    if args.command not in COMMANDS:
        make_parser().print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except DeviceError as exc:
        say("error: {}".format(exc))
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
