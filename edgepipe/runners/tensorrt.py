"""TrtRunner: a serialized TensorRT engine behind the common Runner contract.

The engine itself is the device runtime's ``Engine`` (edgepipe/device/engine.py): the same code a bundle
runs on a Jetson without edgepipe installed. It speaks both TensorRT APIs (named I/O tensors from 8.5, the
bindings API on 8.0-8.4), names every input and output (a detector's boxes, scores and classes come back as
they are), and reaches CUDA through ctypes on libcudart: page-locked host buffers, device buffers sized for
the profile's max batch, one stream that carries the copies and the execution, CUDA events for GPU time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import MANIFEST, read_manifest
from edgepipe.device import engine as device
from edgepipe.device.loader import numpy_dtype  # not trt.nptype, which fails before 8.5.3 on numpy 1.24
from edgepipe.errors import EdgepipeError, MissingDependency
from edgepipe.runners.base import Runner, TensorSpec

__all__ = ["TrtRunner", "TrtTiming", "numpy_dtype"]


@dataclass(frozen=True)
class TrtTiming:
    gpu_compute_ms: float  # CUDA events around the execute call only
    host_to_host_ms: float  # host input in -> host output out: copies, execute, synchronize


class TrtRunner(Runner):
    """Run a TensorRT engine file."""

    backend = "tensorrt"

    def __init__(self, engine_path: Path, *, check_portability: bool = True) -> None:
        super().__init__()
        self.engine_path = Path(engine_path)
        self._check_portability = check_portability
        self._device_engine: device.Engine | None = None
        self._device_name = "cuda:0"

    def open(self) -> None:
        from edgepipe.trt.loader import cuda_device, import_tensorrt
        from edgepipe.trt.portability import check_engine_portable, machine_facts

        trt = import_tensorrt()
        if not self.engine_path.is_file():
            raise EdgepipeError(f"engine file not found: {self.engine_path}")
        found = cuda_device()
        if found is None:
            raise MissingDependency(f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible")
        self._device_name = f"cuda:0 ({found.name})"
        settings: dict[str, Any] = {}
        if (self.engine_path.parent / MANIFEST).is_file():
            manifest = read_manifest(self.engine_path.parent)
            recorded = manifest.config
            settings = recorded.get("settings") or {}
            if self._check_portability:
                check_engine_portable(manifest, machine_facts(trt, found))
        self._device_engine = device.Engine(self.engine_path, settings, trt=trt)

    def close(self) -> None:
        if self._device_engine is not None:
            self._device_engine.close()
            self._device_engine = None

    @property
    def last_timing(self) -> TrtTiming | None:
        timing = None if self._device_engine is None else self._device_engine.last_timing
        return None if timing is None else TrtTiming(*timing)

    def _live(self) -> device.Engine:
        if self._device_engine is None:
            raise RuntimeError("TrtRunner inputs and outputs are known once the runner is open")
        return self._device_engine

    @staticmethod
    def _spec(io: device.TensorIO) -> TensorSpec:
        return TensorSpec(io.name, io.spec_shape(), np.dtype(io.dtype).name)

    @property
    def inputs(self) -> list[TensorSpec]:
        return [self._spec(io) for io in self._live().inputs]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [self._spec(io) for io in self._live().outputs]

    @property
    def device(self) -> str:
        return self._device_name

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._live().infer(feed)
