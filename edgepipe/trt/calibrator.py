"""Implicit INT8 from an existing calibration cache (TensorRT 8.x/10.x), never re-calibrating silently.

The cache comes from `edgepipe quantize` (the same calibration run that made the QDQ graph). TensorRT
asks ``read_calibration_cache`` first; when it accepts the bytes it never calls ``get_batch``. If it
rejects them (another TensorRT's header, another calibrator algorithm) it would fall back to calibrating
on whatever ``get_batch`` serves: we serve nothing and record that it asked, and the build is refused.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from edgepipe.errors import EdgepipeError
from edgepipe.trt.calib_cache import CACHE_ALGORITHM, with_running_header


def read_cache(path: Path) -> bytes:
    data = Path(path).read_bytes()
    header = data.split(b"\n", 1)[0].decode("ascii", errors="replace").strip()
    if not header.startswith("TRT-") or not header.endswith(CACHE_ALGORITHM):
        raise EdgepipeError(
            f"{path} is not an IInt8EntropyCalibrator2 cache (first line {header[:60]!r}, expected "
            f"'TRT-<version>-{CACHE_ALGORITHM}'); rerun `edgepipe quantize`"
        )
    return data


def make_cache_calibrator(trt: ModuleType, cache_path: Path, batch_size: int = 1) -> Any:
    """An instance of a trt.IInt8EntropyCalibrator2 subclass that only serves ``cache_path``, its header naming the
    running TensorRT (quantize writes the target's nominal version; a Jetson may run another patch release)."""
    cache = with_running_header(read_cache(cache_path), trt.__version__)

    class CacheOnlyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            # pybind11 trampolines need the base __init__ called explicitly (TensorRT Python API docs).
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = Path(cache_path)
            self.calibration_requested = False
            self.cache_reads = 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> None:
            # TensorRT rejected the cache and wants data: refuse (None ends calibration) and remember.
            self.calibration_requested = True
            return None

        def read_calibration_cache(self) -> bytes:
            self.cache_reads += 1
            return cache

        def write_calibration_cache(self, cache: Any) -> None:
            # The quantize stage owns trt.calib.cache; a build never rewrites another stage's artifact.
            return None

    return CacheOnlyCalibrator()


def check_calibrator_used_cache(calibrator: Any) -> None:
    if calibrator is not None and calibrator.calibration_requested:
        raise EdgepipeError(
            f"TensorRT rejected {calibrator.cache_path} and asked for calibration data "
            "(the cache was made by "
            "another TensorRT version or calibrator); rerun `edgepipe quantize` with this TensorRT, "
            "or build from the QDQ model"
        )
