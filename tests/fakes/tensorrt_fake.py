"""A recording fake of the `tensorrt` module (8.x / 10.x / 11.x surfaces) and of libcudart (through ctypes).

Only names the real API has are offered (tests/unit/test_trt_api_surface.py checks every public name
here against the tensorrt-stubs 10.13 .pyi text, plus an explicit, cited allow-list for 8.x-only names).
Each fake class says which real class it stands for in ``REAL``. Every call lands in ``trt.calls`` as
("Class.method", args), so tests assert exact configurations and call sequences.

The fake "engine" is JSON (b"FAKEENGINE:{...}"); its execution computes
``logits[n, k] = sum(input[n]) * (k + 1)`` from the fake device memory, so data flow is checkable.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np

NUM_CLASSES = 10
FAKE_ACTIVATION_BYTES = 3 << 20  # what a fake engine says it needs for activations
ENGINE_MAGIC = b"FAKEENGINE:"


def _v(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3])


class _Member:
    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    __index__ = __int__

    def __repr__(self) -> str:
        return f"<{self.enum}.{self.name}: {self.value}>"


def _enum(name: str, members: list[str], values: dict[str, int] | None = None) -> type:
    values = values or {}
    namespace: dict[str, Any] = {"REAL": name}
    for index, member in enumerate(members):
        namespace[member] = _Member(name, member, values.get(member, index))
    return type(name, (), namespace)


def _int(value: Any, where: str) -> int:
    """pybind11 converts an int parameter from an int (or __index__), never from a float: the real bindings raise
    TypeError "incompatible function arguments" (seen through tests/realtrt with a float workspace)."""
    if isinstance(value, float) or not hasattr(value, "__index__"):
        raise TypeError(f"{where}(): incompatible function arguments; invoked with {value!r}")
    return int(value)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __call__(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class DeviceMemory:
    """Fake device memory shared by the cudart fake (allocations, copies) and the fake engine (execution).

    A "device" address is the real address of a host block, so the C++ fake core under NVIDIA's real bindings
    (tests/realtrt/core/fakecore.cpp) reads inputs and writes outputs at the addresses the runtime hands
    IExecutionContext.set_tensor_address, exactly as a kernel would."""

    def __init__(self) -> None:
        self.blocks: dict[int, np.ndarray] = {}

    def alloc(self, nbytes: int) -> int:
        block = np.zeros(max(nbytes, 1) + 256, dtype=np.uint8)
        offset = -block.ctypes.data % 256  # cudaMalloc's alignment
        view = block[offset:offset + nbytes]
        address = block.ctypes.data + offset
        self.blocks[address] = view
        return address


def make_tensorrt(
    version: str = "10.13.0.35",
    *,
    memory: DeviceMemory | None = None,
    num_dla_cores: int = 0,
    parse_errors: list[tuple[int, str]] | None = None,
    build_fails: bool = False,
    reject_calibration_cache: bool = False,
    classes: int = NUM_CLASSES,
) -> types.ModuleType:
    """A fresh fake tensorrt module of ``version``; ``trt.calls`` records every API call."""
    ver = _v(version)
    major = ver[0]
    record = Recorder()
    memory = memory or DeviceMemory()
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = record.calls
    trt.recorder = record
    trt.memory = memory

    flags = [
        "FP16",
        "INT8",
        "DEBUG",
        "GPU_FALLBACK",
        "REFIT",
        "DISABLE_TIMING_CACHE",
        "TF32",
        "SPARSE_WEIGHTS",
    ]
    if ver >= (8, 6):
        flags.append("VERSION_COMPATIBLE")
    if major >= 11:  # removed in 11: precision flags (TensorRT 10.x -> 11.x migration guide)
        flags = [f for f in flags if f not in ("FP16", "INT8")]
    # The values the real bindings give (tests/data/trt_api/<release>.json "enum_values"): 8.x keeps STRICT_TYPES
    # at 4, 10.0 removed it and renumbered, 11.0 renumbered again (VERSION_COMPATIBLE 15 -> 13 -> 12).
    flag_values = {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5,
                   "TF32": 6, "SPARSE_WEIGHTS": 7, "VERSION_COMPATIBLE": 13 if major == 10 else 12}
    if major < 10:
        flag_values.update(REFIT=5, DISABLE_TIMING_CACHE=6, TF32=7, SPARSE_WEIGHTS=8, VERSION_COMPATIBLE=15)
    trt.BuilderFlag = _enum("BuilderFlag", flags, flag_values)
    network_flags = ["EXPLICIT_BATCH"] if major < 11 else []
    if major >= 10:
        network_flags.append("STRONGLY_TYPED")
    # 11.0 dropped EXPLICIT_BATCH and STRONGLY_TYPED became 0 (the real 11.x bindings)
    trt.NetworkDefinitionCreationFlag = _enum(
        "NetworkDefinitionCreationFlag", network_flags, {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1 if major < 11 else 0}
    )
    if ver >= (8, 4):
        trt.MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    if ver >= (8, 6):
        levels = ["NONE", "AMPERE_PLUS"] + (["SAME_COMPUTE_CAPABILITY"] if ver >= (10, 9) else [])  # pyCore.cpp 10.9
        trt.HardwareCompatibilityLevel = _enum("HardwareCompatibilityLevel", levels)
    if ver >= (10, 8):  # tiling optimization: TensorRT 10.8 release notes; pyCore.cpp
        trt.TilingOptimizationLevel = _enum("TilingOptimizationLevel", ["NONE", "FAST", "MODERATE", "FULL"])
    trt.DeviceType = _enum("DeviceType", ["GPU", "DLA"])
    trt.DataType = _enum("DataType", ["FLOAT", "HALF", "INT8", "INT32"])
    named_api = ver >= (8, 5)
    if named_api:
        trt.TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])

    def nptype(dtype: Any) -> type:
        # Before 8.5.3 the real nptype builds its table with np.bool, which numpy 1.24 removed: it always raises.
        if ver < (8, 5, 3) and not hasattr(np, "bool"):
            raise AttributeError("module 'numpy' has no attribute 'bool'")
        return {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32}[dtype.name]

    trt.nptype = nptype

    class ILogger:
        REAL = "ILogger"

        def __init__(self) -> None:
            pass

    class Logger(ILogger):
        REAL = "Logger"
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (
            _Member("Severity", n, i)
            for i, n in enumerate(["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"])
        )

        def __init__(self, min_severity: Any = None) -> None:
            self.min_severity = min_severity

        def log(self, severity: Any, msg: str) -> None:
            pass

    trt.ILogger, trt.Logger = ILogger, Logger

    class ITensor:
        REAL = "ITensor"

        def __init__(self, name: str, shape: tuple[int, ...]) -> None:
            self.name, self.shape = name, shape

    class INetworkDefinition:
        REAL = "INetworkDefinition"

        def __init__(self, flags: int) -> None:
            self.creation_flags = flags
            self.inputs: list[ITensor] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, index: int) -> ITensor:
            return self.inputs[index]

    class IOptimizationProfile:
        REAL = "IOptimizationProfile"

        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - real names
            for dim in (*min, *opt, *max):
                _int(dim, "set_shape")
            record("IOptimizationProfile.set_shape", input, tuple(min), tuple(opt), tuple(max))
            self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    class IHostMemory(bytes):
        REAL = "IHostMemory"

        @property
        def nbytes(self) -> int:
            return len(self)

    class ITimingCache:
        REAL = "ITimingCache"

        def __init__(self, data: bytes) -> None:
            self.data = bytes(data)

        def serialize(self) -> IHostMemory:
            # Timing caches hold tactic timings of one TensorRT release on one GPU.
            return IHostMemory(b"TIMING(" + version.encode() + b")[" + self.data + b"]")

    config_attrs = {"DLA_core", "default_device_type", "flags", "profile_stream", "avg_timing_iterations"}
    if ver >= (8, 6):
        config_attrs |= {"builder_optimization_level", "hardware_compatibility_level"}
    if ver >= (10, 8):
        config_attrs.add("tiling_optimization_level")
    if major < 11:
        config_attrs.add("int8_calibrator")
    if ver < (8, 4):
        config_attrs.add("max_workspace_size")

    class IBuilderConfig:
        REAL = "IBuilderConfig"
        SETTABLE = frozenset(config_attrs)

        def __init__(self) -> None:
            object.__setattr__(self, "state", {"flags": [], "profiles": []})

        def __setattr__(self, name: str, value: Any) -> None:
            if name not in self.SETTABLE:
                raise AttributeError(f"fake tensorrt {version}: IBuilderConfig has no attribute {name!r}")
            if name in ("DLA_core", "builder_optimization_level", "max_workspace_size", "avg_timing_iterations"):
                _int(value, f"IBuilderConfig.{name}")
            record(f"IBuilderConfig.{name}=", value)
            self.state[name] = value

        def __getattr__(self, name: str) -> Any:
            if name in type(self).SETTABLE:
                return self.state.get(name)
            raise AttributeError(name)

        def set_flag(self, flag: Any) -> None:
            record("IBuilderConfig.set_flag", flag.name)
            self.state["flags"].append(flag.name)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            record("IBuilderConfig.add_optimization_profile", dict(profile.shapes))
            self.state["profiles"].append(dict(profile.shapes))
            return len(self.state["profiles"]) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
            record("IBuilderConfig.create_timing_cache", bytes(serialized_timing_cache))
            return ITimingCache(serialized_timing_cache)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            record("IBuilderConfig.set_timing_cache", cache.data, ignore_mismatch)
            foreign = bool(cache.data) and not cache.data.startswith(b"TIMING(" + version.encode() + b")")
            if foreign and not ignore_mismatch:
                return False  # the real call refuses another release's (or GPU's) cache and keeps none
            self.state["timing_cache"] = cache
            return True

        def get_timing_cache(self) -> ITimingCache:
            record("IBuilderConfig.get_timing_cache")
            return self.state["timing_cache"]

    if ver >= (8, 4):

        def set_memory_pool_limit(self: Any, pool: Any, pool_size: int) -> None:
            _int(pool_size, "set_memory_pool_limit")
            record("IBuilderConfig.set_memory_pool_limit", pool.name, pool_size)
            self.state.setdefault("memory_pool_limits", {})[pool.name] = pool_size

        IBuilderConfig.set_memory_pool_limit = set_memory_pool_limit
    if major < 11:

        def set_calibration_profile(self: Any, profile: Any) -> bool:
            record("IBuilderConfig.set_calibration_profile", dict(profile.shapes))
            self.state["calibration_profile"] = dict(profile.shapes)
            return True

        IBuilderConfig.set_calibration_profile = set_calibration_profile

    class ParserError:
        REAL = "ParserError"

        def __init__(self, node: int, desc: str) -> None:
            self._node, self._desc = node, desc

        def node(self) -> int:
            return self._node

        def desc(self) -> str:
            return self._desc

    class OnnxParser:
        REAL = "OnnxParser"

        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            record("OnnxParser", network.creation_flags)
            self.network = network
            self.errors = [ParserError(n, d) for n, d in (parse_errors or [])]

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> ParserError:
            return self.errors[index]

        def parse_from_file(self, model: str) -> bool:
            import onnx

            record("OnnxParser.parse_from_file", Path(model).name)
            if self.errors:
                return False
            graph_input = onnx.load(model, load_external_data=False).graph.input[0]
            dims = tuple(
                d.dim_value if d.HasField("dim_value") else -1 for d in graph_input.type.tensor_type.shape.dim
            )
            self.network.inputs.append(ITensor(graph_input.name, dims))
            return True

    class Builder:
        REAL = "Builder"

        def __init__(self, logger: Any) -> None:
            record("Builder", type(logger).__name__)
            self.logger = logger

        @property
        def num_DLA_cores(self) -> int:
            return num_dla_cores

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            record("Builder.create_network", flags)
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            record("Builder.create_builder_config")
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            record("Builder.create_optimization_profile")
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> Any:
            record("Builder.build_serialized_network")
            calibrator = config.state.get("int8_calibrator")
            if calibrator is not None:
                cache = calibrator.read_calibration_cache()
                # TensorRT uses a cache only when its header names this very release (NV_TENSORRT_VERSION).
                number = ver[0] * (10000 if ver[0] >= 10 else 1000) + ver[1] * 100 + (ver[2] if len(ver) > 2 else 0)
                header = bytes(cache or b"").split(b"\n", 1)[0].decode(errors="replace")
                if reject_calibration_cache or not cache or not header.startswith(f"TRT-{number}-"):
                    calibrator.get_batch([network.inputs[0].name])
            if build_fails:
                self.logger.log(Logger.ERROR, "fake: out of workspace memory")
                return None
            tensor = network.inputs[0]
            profile = config.state["profiles"][0][tensor.name]
            description = {
                "input": tensor.name,
                "shape": list(tensor.shape),
                "profile": [list(s) for s in profile],
                "version_compatible": "VERSION_COMPATIBLE" in config.state["flags"],
            }
            return IHostMemory(ENGINE_MAGIC + json.dumps(description).encode())

    trt.ITensor, trt.INetworkDefinition, trt.IOptimizationProfile = (
        ITensor,
        INetworkDefinition,
        IOptimizationProfile,
    )
    trt.IHostMemory, trt.ITimingCache, trt.IBuilderConfig = IHostMemory, ITimingCache, IBuilderConfig
    trt.ParserError, trt.OnnxParser, trt.Builder = ParserError, OnnxParser, Builder

    if major < 11:  # implicit INT8 calibration removed in 11 (TensorRT 10.x -> 11.x migration guide)

        class IInt8EntropyCalibrator2:
            REAL = "IInt8EntropyCalibrator2"

            def __init__(self) -> None:
                pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    _add_runtime(trt, record, memory, named_api, classes)
    return trt


def _add_runtime(trt: types.ModuleType, record: Recorder, memory: DeviceMemory, named_api: bool,
                 classes: int = NUM_CLASSES) -> None:
    class IExecutionContext:
        REAL = "IExecutionContext"

        def __init__(self, engine: Any) -> None:
            object.__setattr__(self, "engine", engine)
            object.__setattr__(self, "input_shape", tuple(engine.description["shape"]))
            object.__setattr__(self, "addresses", {})

        def __setattr__(self, name: str, value: Any) -> None:
            # The real context's properties are read-only from 10.0 (active_optimization_profile included):
            # assigning one raises, as the real bindings do (seen through tests/realtrt).
            if name == "active_optimization_profile" and _v(trt.__version__) < (10, 0):  # settable (deprecated)
                record("IExecutionContext.active_optimization_profile=", _int(value, name))
                return
            if name != "input_shape":
                raise AttributeError(f"property of 'IExecutionContext' object has no setter ({name})")
            object.__setattr__(self, name, value)

        def _out_shape(self) -> tuple[int, ...]:
            return (self.input_shape[0], classes)

        def _run(self, input_address: int, output_address: int) -> bool:
            shape = self.input_shape
            count = int(np.prod(shape))
            x = memory.blocks[input_address].view(np.float32)[:count].reshape(shape[0], -1)
            logits = x.sum(axis=1, keepdims=True) * np.arange(1, classes + 1, dtype=np.float32)
            memory.blocks[output_address].view(np.float32)[: logits.size] = logits.reshape(-1)
            return True

    class ICudaEngine:
        REAL = "ICudaEngine"

        def __init__(self, description: dict) -> None:
            self.description = description
            self.names = [description["input"], "logits"]

        def create_execution_context(self) -> IExecutionContext:
            record("ICudaEngine.create_execution_context")
            return IExecutionContext(self)

    version = _v(trt.__version__)
    if version < (11, 0):  # activation memory: device_memory_size until 10.x, device_memory_size_v2 from 10.x
        ICudaEngine.device_memory_size = property(lambda self: FAKE_ACTIVATION_BYTES)
    if version >= (10, 3):
        ICudaEngine.device_memory_size_v2 = property(lambda self: FAKE_ACTIVATION_BYTES)

    if named_api:

        def num_io_tensors(self: Any) -> int:
            return 2

        def get_tensor_name(self: Any, index: int) -> str:
            return self.names[index]

        def get_tensor_mode(self: Any, name: str) -> Any:
            return trt.TensorIOMode.INPUT if name == self.names[0] else trt.TensorIOMode.OUTPUT

        def get_tensor_shape(self: Any, name: str) -> tuple:
            if name == self.names[0]:
                return tuple(self.description["shape"])
            return (-1, classes)

        def get_tensor_dtype(self: Any, name: str) -> Any:
            return trt.DataType.FLOAT

        def get_tensor_profile_shape(self: Any, name: str, profile_index: int) -> list:
            return [tuple(s) for s in self.description["profile"]]

        ICudaEngine.num_io_tensors = property(num_io_tensors)
        for function in (
            get_tensor_name,
            get_tensor_mode,
            get_tensor_shape,
            get_tensor_dtype,
            get_tensor_profile_shape,
        ):
            setattr(ICudaEngine, function.__name__, function)

        def set_input_shape(self: Any, name: str, shape: tuple) -> bool:
            for dim in shape:
                _int(dim, "set_input_shape")
            record("IExecutionContext.set_input_shape", name, tuple(shape))
            low, high = self.engine.description["profile"][0], self.engine.description["profile"][2]
            if not all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True)):
                return False
            self.input_shape = tuple(shape)
            return True

        def ctx_get_tensor_shape(self: Any, name: str) -> tuple:
            return self.input_shape if name == self.engine.names[0] else self._out_shape()

        def set_tensor_address(self: Any, name: str, memory: int) -> bool:  # pybind11's parameter names
            _int(memory, "set_tensor_address")
            record("IExecutionContext.set_tensor_address", name, memory)
            self.addresses[name] = memory
            return True

        def execute_async_v3(self: Any, stream_handle: int) -> bool:
            record("IExecutionContext.execute_async_v3", stream_handle)
            names = self.engine.names
            return self._run(self.addresses[names[0]], self.addresses[names[1]])

        IExecutionContext.set_input_shape = set_input_shape
        IExecutionContext.get_tensor_shape = ctx_get_tensor_shape
        IExecutionContext.set_tensor_address = set_tensor_address
        IExecutionContext.execute_async_v3 = execute_async_v3
    else:  # TensorRT 8.0-8.4 bindings API

        def num_bindings(self: Any) -> int:
            return 2

        def get_binding_name(self: Any, index: int) -> str:
            return self.names[index]

        def binding_is_input(self: Any, index: int) -> bool:
            return index == 0

        def get_binding_shape(self: Any, index: int) -> tuple:
            return tuple(self.description["shape"]) if index == 0 else (-1, classes)

        def get_binding_dtype(self: Any, index: int) -> Any:
            return trt.DataType.FLOAT

        def get_profile_shape(self: Any, profile_index: int, binding: int) -> list:
            return [tuple(s) for s in self.description["profile"]]

        ICudaEngine.num_bindings = property(num_bindings)
        for function in (
            get_binding_name,
            binding_is_input,
            get_binding_shape,
            get_binding_dtype,
            get_profile_shape,
        ):
            setattr(ICudaEngine, function.__name__, function)

        def set_binding_shape(self: Any, index: int, shape: tuple) -> bool:
            record("IExecutionContext.set_binding_shape", index, tuple(shape))
            low, high = self.engine.description["profile"][0], self.engine.description["profile"][2]
            if not all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True)):
                return False  # outside the optimization profile, as the real call says
            self.input_shape = tuple(shape)
            return True

        def ctx_get_binding_shape(self: Any, index: int) -> tuple:
            return self.input_shape if index == 0 else self._out_shape()

        def execute_async_v2(self: Any, bindings: list[int], stream_handle: int) -> bool:
            record("IExecutionContext.execute_async_v2", list(bindings), stream_handle)
            return self._run(bindings[0], bindings[1])

        IExecutionContext.set_binding_shape = set_binding_shape
        IExecutionContext.get_binding_shape = ctx_get_binding_shape
        IExecutionContext.execute_async_v2 = execute_async_v2

    runtime_attrs = {"DLA_core"} | ({"engine_host_code_allowed"} if _v(trt.__version__) >= (8, 6) else set())

    class Runtime:
        REAL = "Runtime"
        SETTABLE = frozenset(runtime_attrs)

        def __init__(self, logger: Any) -> None:
            record("Runtime", type(logger).__name__)
            object.__setattr__(self, "logger", logger)
            object.__setattr__(self, "state", {"DLA_core": -1, "engine_host_code_allowed": False})

        def __setattr__(self, name: str, value: Any) -> None:
            if name not in self.SETTABLE:
                raise AttributeError(f"fake tensorrt {trt.__version__}: Runtime has no attribute {name!r}")
            record(f"Runtime.{name}=", value)
            self.state[name] = value

        def __getattr__(self, name: str) -> Any:
            if name in type(self).SETTABLE:
                return self.state[name]
            raise AttributeError(name)

        def deserialize_cuda_engine(self, serialized_engine: Any) -> Any:
            data = bytes(serialized_engine)
            record("Runtime.deserialize_cuda_engine", len(data))
            try:
                assert data.startswith(ENGINE_MAGIC)
                description = json.loads(data[len(ENGINE_MAGIC) :])
            except (AssertionError, ValueError):
                self.logger.log(trt.Logger.ERROR, "fake: the engine plan file is corrupted")
                return None
            if description.get("version_compatible") and not self.state["engine_host_code_allowed"]:
                # A version-compatible plan carries a lean runtime; TensorRT refuses to run host code unasked.
                self.logger.log(trt.Logger.ERROR, "fake: engine_host_code_allowed is false for a version-"
                                                  "compatible engine")
                return None
            return ICudaEngine(description)

    trt.IExecutionContext, trt.ICudaEngine, trt.Runtime = IExecutionContext, ICudaEngine, Runtime


class FakeCudartLib:
    """Stands in for libcudart under edgepipe.device.cuda.Cudart: the same C function names, taking the same
    ctypes arguments (pointers, c_void_p, c_size_t), so the real ctypes marshalling is what the tests run.
    Device memory is ``memory`` (shared with the fake engine); host memory is real page-less ctypes buffers.
    Calls land in ``record`` as "cudart.<function>" with the stream where there is one."""

    def __init__(self, memory: DeviceMemory, record: Recorder, *, cc: tuple[int, int] = (8, 7),
                 total_mib: int = 7620, devices: int = 1, name: str = "NVIDIA Orin") -> None:
        self.memory, self.record, self.cc, self.total, self.devices = memory, record, cc, total_mib << 20, devices
        self.device_name = name
        self.host: dict[int, Any] = {}
        self.allocated = 0
        self.streams: set[int] = set()
        self._handles = 0x5000

    @staticmethod
    def _value(argument: Any) -> int:
        return int(argument.value or 0) if hasattr(argument, "value") else int(argument)

    def _handle(self) -> int:
        self._handles += 0x10
        return self._handles

    def cudaGetErrorString(self, status: int) -> bytes:  # noqa: N802 - the C API's names
        return b"fake cuda error"

    def cudaGetDeviceCount(self, count: Any) -> int:  # noqa: N802
        count.contents.value = self.devices
        return 0 if self.devices else 100  # cudaErrorNoDevice

    def cudaDeviceGetAttribute(self, value: Any, attribute: int, device: int) -> int:  # noqa: N802
        value.contents.value = {75: self.cc[0], 76: self.cc[1]}[attribute]
        return 0

    def cudaGetDeviceProperties_v2(self, properties: Any, device: int) -> int:  # noqa: N802
        import ctypes

        name = self.device_name.encode()
        ctypes.memmove(properties, name + b"\0", len(name) + 1)  # cudaDeviceProp.name is the first field
        return 0

    def cudaMemGetInfo(self, free: Any, total: Any) -> int:  # noqa: N802
        free.contents.value, total.contents.value = self.total - self.allocated, self.total
        return 0

    def cudaMalloc(self, pointer: Any, size: Any) -> int:  # noqa: N802
        nbytes = self._value(size)
        pointer.contents.value = self.memory.alloc(nbytes)
        self.allocated += nbytes
        self.record("cudart.cudaMalloc", nbytes)
        return 0

    def cudaFree(self, address: Any) -> int:  # noqa: N802
        block = self.memory.blocks.pop(self._value(address))
        self.allocated -= block.size
        self.record("cudart.cudaFree")
        return 0

    def cudaMallocHost(self, pointer: Any, size: Any) -> int:  # noqa: N802
        import ctypes

        buffer = (ctypes.c_uint8 * self._value(size))()
        address = ctypes.addressof(buffer)
        self.host[address] = buffer
        pointer.contents.value = address
        self.record("cudart.cudaMallocHost", self._value(size))
        return 0

    def cudaFreeHost(self, address: Any) -> int:  # noqa: N802
        del self.host[self._value(address)]
        self.record("cudart.cudaFreeHost")
        return 0

    def cudaMemcpyAsync(self, destination: Any, source: Any, size: Any, kind: int, stream: Any) -> int:  # noqa: N802
        import ctypes

        nbytes, dst, src, handle = self._value(size), self._value(destination), self._value(source), self._value(stream)
        assert handle in self.streams, "a copy on a stream that was never created (the default stream)"
        if kind == 1:  # host to device
            assert src in self.host and dst in self.memory.blocks, "H2D needs pinned host -> device memory"
            self.memory.blocks[dst][:nbytes] = np.frombuffer(ctypes.string_at(src, nbytes), np.uint8)
            self.record("cudart.cudaMemcpyAsync:H2D", nbytes, handle)
        elif kind == 2:
            assert dst in self.host and src in self.memory.blocks, "D2H needs device -> pinned host memory"
            ctypes.memmove(dst, self.memory.blocks[src].ctypes.data, nbytes)
            self.record("cudart.cudaMemcpyAsync:D2H", nbytes, handle)
        else:
            raise AssertionError(f"unexpected cudaMemcpyKind {kind}")
        return 0

    def cudaStreamCreate(self, stream: Any) -> int:  # noqa: N802
        handle = self._handle()
        self.streams.add(handle)
        stream.contents.value = handle
        self.record("cudart.cudaStreamCreate", handle)
        return 0

    def cudaStreamSynchronize(self, stream: Any) -> int:  # noqa: N802
        self.record("cudart.cudaStreamSynchronize", self._value(stream))
        return 0

    def cudaStreamDestroy(self, stream: Any) -> int:  # noqa: N802
        self.streams.discard(self._value(stream))
        self.record("cudart.cudaStreamDestroy", self._value(stream))
        return 0

    def cudaEventCreate(self, event: Any) -> int:  # noqa: N802
        event.contents.value = self._handle()
        return 0

    def cudaEventRecord(self, event: Any, stream: Any) -> int:  # noqa: N802
        self.record("cudart.cudaEventRecord", self._value(stream))
        return 0

    def cudaEventElapsedTime(self, milliseconds: Any, start: Any, end: Any) -> int:  # noqa: N802
        milliseconds.contents.value = 0.25
        return 0

    def cudaEventDestroy(self, event: Any) -> int:  # noqa: N802
        return 0


def install(
    monkeypatch: Any,
    version: str = "10.13.0.35",
    *,
    cc: tuple[int, int] = (8, 7),
    gpu: str = "NVIDIA Orin",
    total_mib: int = 7620,
    devices: int = 1,
    **options: Any,
) -> types.ModuleType:
    """Serve a fake tensorrt + libcudart through the device runtime's loader for one test (monkeypatch undoes it).

    ``trt.cudart`` is the fake library; ``trt.calls`` records TensorRT and CUDA calls in one sequence."""
    from edgepipe.device import cuda as device_cuda
    from edgepipe.device import loader as device_loader
    from edgepipe.trt import loader

    memory = DeviceMemory()
    trt = make_tensorrt(version, memory=memory, **options)
    lib = FakeCudartLib(memory, trt.recorder, cc=cc, total_mib=total_mib, devices=devices, name=gpu)
    cuda = device_cuda.Cudart(lib)
    monkeypatch.setitem(device_loader._injected, "tensorrt", trt)
    monkeypatch.setitem(device_cuda._injected, "cudart", cuda)
    monkeypatch.setattr(loader, "NV_TEGRA_RELEASE", Path("/nonexistent/nv_tegra_release"))
    trt.cudart = lib
    return trt
