"""The INT8 calibration cache on the device: its header names the running TensorRT release, and a calibrator
that only serves the cache (implicit INT8 on TensorRT 8.x/10.x; TensorRT 11 has no implicit INT8)."""

from .common import tensorrt_version_number
from .errors import DeviceError

CACHE_ALGORITHM = "EntropyCalibration2"


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
