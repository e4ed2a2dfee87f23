"""Build planning: which ONNX, network typing, precision flags and calibration cache a precision needs on a
TensorRT release (8.x implicit INT8 from the cache, 9/10 the QDQ graph first, 11 strongly typed only)."""

import os

from .common import basename
from .errors import DeviceError
from .layout import CALIB_CACHE, FP16_ONNX, FP32_ONNX, INT8_TRT_ONNX


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
        return BuildPlan(onnx, False, (), None, "TensorRT {}: fp32 from {}".format(trt_major, basename(onnx)))
    if precision == "fp16":
        onnx = need("fp32_onnx", FP32_ONNX, "fp16 with the FP16 builder flag")
        return BuildPlan(onnx, False, ("FP16",), None, "TensorRT {}: FP16 builder flag on {}".format(
            trt_major, basename(onnx)))
    # int8: FP16 beside INT8, so layers left unquantized run in half precision, not FP32.
    flags = ("INT8", "FP16")
    fp32, qdq, cache = files.get("fp32_onnx"), files.get("int8_trt_onnx"), files.get("calibration_cache")
    if trt_major == 8 and cache is not None and fp32 is not None:
        if check_cache:
            check_cache(cache)
        return BuildPlan(fp32, False, flags, cache, "TensorRT {}: implicit INT8 from {} on {}".format(
            trt_major, basename(cache), basename(fp32)))
    if qdq is not None:
        return BuildPlan(qdq, False, flags, None, "TensorRT {}: explicit INT8 from the QDQ graph {}".format(
            trt_major, basename(qdq)))
    if cache is not None and fp32 is not None:
        if check_cache:
            check_cache(cache)
        return BuildPlan(fp32, False, flags, cache, "TensorRT {}: implicit INT8 from {} (no QDQ graph found)".format(
            trt_major, basename(cache)))
    raise DeviceError("int8 needs {} or {}, and {} has neither; run `edgepipe quantize` first".format(
        INT8_TRT_ONNX, CALIB_CACHE, where))
