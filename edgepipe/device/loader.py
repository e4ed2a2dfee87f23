"""TensorRT for the device runtime: ``import tensorrt`` on demand (a fake in tests), its version, its dtypes, a
logger that keeps TensorRT's own reasons, and a runtime set up for an engine's settings.

TensorRT API per release, read from NVIDIA/TensorRT's bindings (python/src/infer/pyCore.cpp per release branch):
- 8.0-8.4: bindings (num_bindings, binding_is_input, set_binding_shape, execute_async_v2);
  ``max_workspace_size`` before 8.4, ``set_memory_pool_limit`` from 8.4.
- 8.5+: named I/O tensors (num_io_tensors, get_tensor_mode, set_input_shape, set_tensor_address,
  execute_async_v3), the only API from 10.0.
- 8.6+: Runtime.engine_host_code_allowed (version-compatible plans); the builder settings per release are in
  settings.py.
- 11: no precision builder flags, no implicit INT8: strongly typed networks from the FP16 / QDQ graphs.
- ``trt.nptype`` is not used: before 8.5.3 it refers to ``np.bool``, which numpy 1.24 removed.
"""

import importlib

import numpy as np

from .common import version_tuple
from .errors import DeviceError, MissingPiece

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
