"""TrtRunner: a serialized TensorRT engine behind the common Runner contract.

- TensorRT >= 8.5 (and the only way in 10/11): named I/O tensors — num_io_tensors, get_tensor_name,
  get_tensor_mode, set_input_shape, set_tensor_address, execute_async_v3.
- TensorRT 8.0-8.4 (JetPack 4.6 on the Nano): the bindings API — num_bindings, binding_is_input,
  set_binding_shape, execute_async_v2.
Every input and output is named (a detector's boxes, scores and classes come back as they are). Device
buffers come from pycuda (pinned host buffers, a stream, events), or from torch CUDA tensors when pycuda
is missing. Buffers are allocated once for the profile's max batch; larger batches are split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import MANIFEST, read_manifest
from edgepipe.errors import EdgepipeError, MissingDependency
from edgepipe.runners.base import Runner, TensorSpec

__all__ = ["TrtRunner", "TrtTiming"]


# trt.DataType member name -> numpy dtype. Not trt.nptype: before TensorRT 8.5.3 it builds its table with
# np.bool, which numpy 1.24 removed, so it raises AttributeError on every JetPack 4.6/5.1 with a current numpy.
_NUMPY_TYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
                "BOOL": np.bool_, "UINT8": np.uint8}


def numpy_dtype(dtype: Any) -> Any:
    """The numpy type of an engine tensor's trt.DataType; one line for types numpy cannot hold (BF16, FP8)."""
    name = getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1])
    if name not in _NUMPY_TYPES:
        raise EdgepipeError(f"engine input/output type {name} has no numpy equivalent; export the model with "
                            "float32 inputs and outputs")
    return _NUMPY_TYPES[name]


@dataclass(frozen=True)
class TrtTiming:
    gpu_compute_ms: float  # CUDA events around the execute call only
    host_to_host_ms: float  # host input in -> host output out: copies, execute, synchronize


@dataclass
class _IO:
    name: str
    index: int
    is_input: bool
    shape: tuple[int, ...]  # engine shape, -1 for dynamic
    dtype: Any
    max_shape: tuple[int, ...] = ()
    min_shape: tuple[int, ...] = ()  # inputs: the optimization profile's minimum (DLA: min == max, a static batch)
    device: Any = None  # pycuda DeviceAllocation or torch tensor
    host: Any = None  # pinned numpy array (pycuda) or pinned torch tensor


class _PycudaBuffers:
    """Pinned host memory, device memory, a stream and timing events from pycuda.driver."""

    kind = "pycuda"

    def __init__(self, cuda: Any) -> None:
        self.cuda = cuda
        cuda.init()
        # The primary context is the one the CUDA runtime (and so TensorRT and torch) uses.
        self.context = cuda.Device(0).retain_primary_context()
        self.context.push()
        self.stream = cuda.Stream()
        self.start, self.end = cuda.Event(), cuda.Event()

    @property
    def stream_handle(self) -> int:
        return self.stream.handle

    def allocate(self, shape: tuple[int, ...], dtype: Any) -> tuple[Any, Any]:
        host = self.cuda.pagelocked_empty(shape, dtype)
        return self.cuda.mem_alloc(host.nbytes), host

    def address(self, device: Any) -> int:
        return int(device)

    def to_device(self, io: _IO, batch: np.ndarray) -> None:
        view = io.host.reshape(-1)[: batch.size].reshape(batch.shape)
        view[...] = batch
        self.cuda.memcpy_htod_async(io.device, view, self.stream)

    def from_device(self, io: _IO, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        view = io.host.reshape(-1)[:count]
        self.cuda.memcpy_dtoh_async(view, io.device, self.stream)
        return view.reshape(shape)

    def record_start(self) -> None:
        self.start.record(self.stream)

    def record_end(self) -> None:
        self.end.record(self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def elapsed_ms(self) -> float:
        return float(self.end.time_since(self.start))

    def close(self) -> None:
        self.context.pop()
        self.context.detach()


class _TorchBuffers:
    """The same with torch CUDA tensors, for machines without pycuda."""

    kind = "torch"

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    @property
    def stream_handle(self) -> int:
        return self.stream.cuda_stream

    def allocate(self, shape: tuple[int, ...], dtype: Any) -> tuple[Any, Any]:
        torch_dtype = self.torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        device = self.torch.empty(shape, dtype=torch_dtype, device="cuda")
        host = self.torch.empty(shape, dtype=torch_dtype, pin_memory=True)
        return device, host

    def address(self, device: Any) -> int:
        return int(device.data_ptr())

    def to_device(self, io: _IO, batch: np.ndarray) -> None:
        count = batch.size
        io.host.view(-1)[:count].copy_(self.torch.from_numpy(batch.reshape(-1)))
        with self.torch.cuda.stream(self.stream):
            io.device.view(-1)[:count].copy_(io.host.view(-1)[:count], non_blocking=True)

    def from_device(self, io: _IO, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        with self.torch.cuda.stream(self.stream):
            io.host.view(-1)[:count].copy_(io.device.view(-1)[:count], non_blocking=True)
        return io.host.view(-1)[:count].numpy().reshape(shape)

    def record_start(self) -> None:
        self.start.record(self.stream)

    def record_end(self) -> None:
        self.end.record(self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def elapsed_ms(self) -> float:
        return float(self.start.elapsed_time(self.end))

    def close(self) -> None:
        return None


def _device_buffers() -> Any:
    from edgepipe.trt.loader import import_pycuda_driver

    cuda = import_pycuda_driver()
    if cuda is not None:
        return _PycudaBuffers(cuda)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        return _TorchBuffers(torch)
    raise MissingDependency(
        "TrtRunner needs pycuda or torch with CUDA for device buffers; `pip install pycuda` or a CUDA torch build"
    )


class TrtRunner(Runner):
    """Run a TensorRT engine file."""

    backend = "tensorrt"

    def __init__(self, engine_path: Path, *, check_portability: bool = True) -> None:
        super().__init__()
        self.engine_path = Path(engine_path)
        self._check_portability = check_portability
        self.last_timing: TrtTiming | None = None
        self._device_name = "cuda:0"

    # -- open / close -------------------------------------------------------------------------------
    def open(self) -> None:
        from edgepipe.trt.loader import cuda_device, import_tensorrt
        from edgepipe.trt.portability import check_engine_portable, machine_facts

        trt = import_tensorrt()
        self._trt = trt
        if not self.engine_path.is_file():
            raise EdgepipeError(f"engine file not found: {self.engine_path}")
        manifest_path = self.engine_path.parent / MANIFEST
        device = cuda_device()
        if device is None:
            raise MissingDependency(f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible")
        self._device_name = f"cuda:0 ({device.name})"
        settings: dict[str, Any] = {}
        if manifest_path.is_file():
            manifest = read_manifest(self.engine_path.parent)
            recorded = manifest.config
            settings = recorded.get("settings") or {}
            if self._check_portability:
                check_engine_portable(manifest, machine_facts(trt, device))
        data = self.engine_path.read_bytes()
        if not data:
            raise EdgepipeError(f"engine file {self.engine_path} is empty; rebuild it with `edgepipe build`")
        from edgepipe.trt.builder import make_logger, make_runtime

        self._logger = make_logger(trt)
        self._runtime = make_runtime(trt, self._logger, settings)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            detail = "; ".join(self._logger.errors()[-1:]) or "TensorRT could not deserialize it"
            raise EdgepipeError(
                f"engine file {self.engine_path} does not load ({len(data)} bytes: "
                f"truncated, corrupt, or from "
                f"another TensorRT version: {detail}); rebuild it with `edgepipe build ... --rebuild`"
            )
        self._context = self._engine.create_execution_context()
        self._named = hasattr(self._engine, "num_io_tensors")  # TensorRT >= 8.5
        self._ios = self._discover_named() if self._named else self._discover_bindings()
        self._in = [io for io in self._ios if io.is_input]
        self._out = [io for io in self._ios if not io.is_input]
        self._buffers = _device_buffers()
        self._allocate()

    def _discover_named(self) -> list[_IO]:
        trt, engine = self._trt, self._engine
        ios = []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            ios.append(_IO(name, index, is_input, shape, numpy_dtype(engine.get_tensor_dtype(name))))
        for io in ios:
            if io.is_input:
                profile = engine.get_tensor_profile_shape(io.name, 0)
                io.min_shape, io.max_shape = tuple(int(d) for d in profile[0]), tuple(int(d) for d in profile[2])
        return ios

    def _discover_bindings(self) -> list[_IO]:
        engine = self._engine
        ios = []
        for index in range(engine.num_bindings):
            shape = tuple(int(d) for d in engine.get_binding_shape(index))
            ios.append(
                _IO(
                    engine.get_binding_name(index),
                    index,
                    engine.binding_is_input(index),
                    shape,
                    numpy_dtype(engine.get_binding_dtype(index)),
                )
            )
        for io in ios:
            if io.is_input:
                profile = engine.get_profile_shape(0, io.index)
                io.min_shape, io.max_shape = tuple(int(d) for d in profile[0]), tuple(int(d) for d in profile[2])
        return ios

    def _set_input_shape(self, io: _IO, shape: tuple[int, ...]) -> None:
        if self._named:
            ok = self._context.set_input_shape(io.name, shape)
        else:
            ok = self._context.set_binding_shape(io.index, shape)
        if ok is False:
            raise EdgepipeError(
                f"input '{io.name}' shape {shape} is outside the engine's profile (max {io.max_shape}); "
                "rebuild with a wider --batch"
            )

    def _output_shape(self, io: _IO) -> tuple[int, ...]:
        if self._named:
            return tuple(int(d) for d in self._context.get_tensor_shape(io.name))
        return tuple(int(d) for d in self._context.get_binding_shape(io.index))

    def _allocate(self) -> None:
        # Size buffers for the profile's max batch; addresses then stay fixed for every call.
        for io in self._in:
            self._set_input_shape(io, io.max_shape)
            io.device, io.host = self._buffers.allocate(io.max_shape, io.dtype)
        for io in self._out:
            io.max_shape = self._output_shape(io)
            io.device, io.host = self._buffers.allocate(io.max_shape, io.dtype)
        if self._named:
            for io in self._ios:
                self._context.set_tensor_address(io.name, self._buffers.address(io.device))
        else:
            ordered = sorted(self._ios, key=lambda io: io.index)
            self._bindings = [self._buffers.address(io.device) for io in ordered]

    def close(self) -> None:
        buffers = getattr(self, "_buffers", None)
        for name in ("_context", "_engine", "_runtime"):
            if hasattr(self, name):
                delattr(self, name)
        if buffers is not None:
            buffers.close()
            self._buffers = None

    # -- contract -----------------------------------------------------------------------------------
    @staticmethod
    def _spec(io: _IO) -> TensorSpec:
        shape = [None if d < 0 else d for d in io.shape]
        if io.is_input and shape and shape[0] is None and io.min_shape and io.min_shape[0] == io.max_shape[0]:
            shape[0] = io.max_shape[0]  # a profile with min == max is a static batch: callers must fill it
        return TensorSpec(io.name, tuple(shape), np.dtype(io.dtype).name)

    @property
    def inputs(self) -> list[TensorSpec]:
        if not hasattr(self, "_in"):
            raise RuntimeError("TrtRunner.inputs are known once the runner is open")
        return [self._spec(io) for io in self._in]

    @property
    def outputs(self) -> list[TensorSpec]:
        if not hasattr(self, "_out"):
            raise RuntimeError("TrtRunner.outputs are known once the runner is open")
        return [self._spec(io) for io in self._out]

    @property
    def device(self) -> str:
        return self._device_name

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        limit = min(io.max_shape[0] for io in self._in)
        least = max(io.min_shape[0] for io in self._in)
        total = len(next(iter(feed.values())))
        if total < least:  # below the profile's minimum (a tail chunk): pad with zeros, cut the padding off
            padded = {name: np.concatenate([array, np.zeros((least - total, *array.shape[1:]), array.dtype)])
                      for name, array in feed.items()}
            return {name: output[:total] for name, output in self._run(padded).items()}
        if total > limit:
            parts = [self._run({name: array[i:i + limit] for name, array in feed.items()})
                     for i in range(0, total, limit)]
            return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        return self._run(feed)

    def _execute(self) -> None:
        if self._named:
            ok = self._context.execute_async_v3(self._buffers.stream_handle)
        else:
            ok = self._context.execute_async_v2(self._bindings, self._buffers.stream_handle)
        if ok is False:
            raise EdgepipeError(
                f"TensorRT failed to run {self.engine_path.name}: {'; '.join(self._logger.errors()[-1:])}"
            )

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        buffers = self._buffers
        started = time.perf_counter()
        for io in self._in:
            self._set_input_shape(io, tuple(feed[io.name].shape))
        for io in self._in:
            buffers.to_device(io, feed[io.name].astype(io.dtype, copy=False))
        buffers.record_start()
        self._execute()
        buffers.record_end()
        results = {io.name: buffers.from_device(io, self._output_shape(io)) for io in self._out}
        buffers.synchronize()
        self.last_timing = TrtTiming(buffers.elapsed_ms(), (time.perf_counter() - started) * 1e3)
        # Copies: the pinned host buffers are overwritten by the next call.
        return {name: np.array(value, copy=True) for name, value in results.items()}
