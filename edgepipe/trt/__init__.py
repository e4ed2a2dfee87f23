"""TensorRT support: lazy import and version detection (loader), build settings and target checks
(settings), input choice per TensorRT version (inputs), the builder (builder), the cache-serving INT8
calibrator (calibrator) and the engine portability guard (portability).

Nothing in this package imports tensorrt at import time.
"""

from edgepipe.trt.loader import import_tensorrt, tensorrt_available

__all__ = ["import_tensorrt", "tensorrt_available"]
