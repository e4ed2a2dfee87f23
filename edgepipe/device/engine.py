"""Running an engine: a deserialized TensorRT engine with device buffers on one CUDA stream (bindings before
8.5, named I/O tensors from 8.5), and onnxruntime's CPU provider where TensorRT is missing."""

import os
import time

import numpy as np

from .common import basename
from .cuda import MEMCPY_DEVICE_TO_HOST, MEMCPY_HOST_TO_DEVICE, HostBuffer, cudart
from .errors import DeviceError, MissingPiece
from .loader import import_tensorrt, make_logger, make_runtime, numpy_dtype


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
            raise DeviceError("TensorRT failed to run {}: {}".format(basename(self.path),
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
