"""TensorRT calibration cache: the text file IInt8EntropyCalibrator2 reads and writes, written without TensorRT.

Format (what TensorRT writes and NVIDIA's TAO exporters write by hand):

    TRT-<NV_TENSORRT_VERSION>-EntropyCalibration2
    <tensor name>: <float32 scale as 8 hex digits, big-endian bit pattern>

The scale is the per-tensor symmetric INT8 step, amax / 127 — the same number the QDQ graph for
TensorRT carries in its activation QuantizeLinear nodes. Tensor names are the ONNX tensor names,
which is what the ONNX parser names TensorRT's tensors. The file holds no key of its own (TensorRT
would reject extra lines), so the quantize manifest records which model and calibration set it was
made from, and ``check_cache_is_fresh`` refuses a stale one.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

# The header ("TRT-<version>-EntropyCalibration2", the first line IInt8EntropyCalibrator2 writes) and its rewrite at
# load belong to the device runtime, which serves the cache to TensorRT on the device.
from edgepipe.device.calib_cache import CACHE_ALGORITHM, cache_header, with_running_header  # noqa: F401
from edgepipe.device.common import tensorrt_version_number  # noqa: F401
from edgepipe.errors import EdgepipeError

INT8_MAX = 127.0


def scale_to_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def hex_to_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text.rjust(8, "0")))[0]


def _float32(value: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def scales_from_ranges(ranges: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Symmetric per-tensor INT8 scales, amax / 127, from calibrated (lowest, highest) ranges."""
    scales = {}
    for name, (lowest, highest) in ranges.items():
        amax = max(abs(float(lowest)), abs(float(highest)))
        # A tensor that is constant zero on the calibration set (a dead ReLU) still needs a positive step. Both
        # go through float32, the width the cache stores: the self-check compares what is read back bit for bit.
        scales[name] = _float32(amax / INT8_MAX if amax > 0 else 1.0 / INT8_MAX)
    return scales


def write_cache(path: Path, scales: dict[str, float], tensorrt_version: str) -> Path:
    lines = [cache_header(tensorrt_version)]
    for name, scale in sorted(scales.items()):  # byte-stable: the order tensors were met varies by process
        if not math.isfinite(scale) or scale <= 0:
            raise EdgepipeError(f"calibration scale of tensor {name!r} is {scale}; it must be positive and finite")
        if ":" in name or "\n" in name or "\r" in name:
            raise EdgepipeError(f"tensor name {name!r} cannot be written to a TensorRT cache (contains ':' or a line "
                                "break)")
        lines.append(f"{name}: {scale_to_hex(scale)}")
    # UTF-8 bytes: TensorRT matches tensor names byte for byte against the ONNX graph's names.
    Path(path).write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return Path(path)


def parse_cache(path: Path) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}); raises EdgepipeError on anything TensorRT would not read."""
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    # split on "\n" only: str.splitlines() also breaks at \x0b, \x1c, \u2028..., which a tensor name may hold
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines or not lines[0].startswith("TRT-") or not lines[0].endswith(CACHE_ALGORITHM):
        raise EdgepipeError(f"{path}: not a TensorRT {CACHE_ALGORITHM} cache (first line "
                            f"{(lines or [''])[0][:60]!r}); rerun `edgepipe quantize`")
    scales = {}
    for number, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(": ")
        try:
            if not sep:
                raise ValueError
            scales[name] = hex_to_scale(value.strip())
        except ValueError:
            raise EdgepipeError(f"{path}:{number}: {line[:60]!r} is not '<tensor>: <hex scale>'") from None
    return lines[0], scales


def check_cache_is_fresh(cache_record: dict, model_sha256: str, calibration_sha256: str | None = None) -> None:
    """Refuse a cache recorded for another model or calibration set (caches are keyed by content)."""
    recorded_model = cache_record.get("model_sha256")
    if recorded_model != model_sha256:
        raise EdgepipeError(f"calibration cache {cache_record.get('file', 'trt.calib.cache')} is stale: made for "
                            f"model sha256 {str(recorded_model)[:12]}, this model is {model_sha256[:12]}; "
                            "rerun `edgepipe quantize`")
    if calibration_sha256 is not None and cache_record.get("calibration_sha256") != calibration_sha256:
        raise EdgepipeError(f"calibration cache {cache_record.get('file', 'trt.calib.cache')} is stale: made from "
                            "another calibration set; rerun `edgepipe quantize`")
