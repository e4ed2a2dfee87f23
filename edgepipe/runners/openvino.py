"""OpenVINO runner: a second CPU runtime beside onnxruntime, reading the project's own ONNX files as they are.

OpenVINO reads ONNX directly (FP32, FP16, and the QDQ INT8 graphs, whose QuantizeLinear/DequantizeLinear
pairs it turns into its own FakeQuantize: the same calibration, no second one). Compiled with the thread
count bench gives it (``INFERENCE_NUM_THREADS``) and one performance hint: ``LATENCY`` (one stream, one
request: what a single caller waits for) or ``THROUGHPUT`` (OpenVINO's streams, each with its share of the
threads; a batch is split across one request per stream, run concurrently, and put back together, so one
caller's batch uses every stream). Which serves a batch size better is measured by bench
(edgepipe/bench/settings.py), not assumed. Imports nothing from torch.

Calls go through the request's own tensors (``set_input_tensor`` on the caller's array, no copy;
``get_output_tensor``), not ``request.infer(dict)``: the dict path costs ~25 us a call, a quarter of a small
model's batch-1 latency (measured on a 2-core Xeon, OpenVINO 2026.4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.errors import EdgepipeError, MissingDependency, first_line
from edgepipe.runners.base import Runner, TensorSpec

HINTS = ("LATENCY", "THROUGHPUT")
# OpenVINO element type names -> numpy dtype names
_OV_TYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32", "i16": "int16",
             "i8": "int8", "u64": "uint64", "u32": "uint32", "u16": "uint16", "u8": "uint8", "boolean": "bool"}


def _import_openvino():
    """openvino, or MissingDependency: "not installed" only when there is no openvino package at all; one that
    raises on import (a missing libopenvino .so, an ABI mismatch) is "broken", with its error."""
    try:
        import openvino
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == "openvino":
            raise MissingDependency("OpenVINO is not installed: `pip install 'edgepipe[openvino]'`") from None
        raise MissingDependency(f"OpenVINO is installed but broken ({type(exc).__name__}: {first_line(exc)}); "
                                "reinstall it: `pip install --force-reinstall 'edgepipe[openvino]'`") from None
    return openvino


def openvino_problem() -> str | None:
    """None when OpenVINO imports here; else why not, in words ("not installed", "installed but broken (...)")."""
    try:
        _import_openvino()
    except MissingDependency as exc:
        return str(exc).split(":")[0] if "not installed" in str(exc) else str(exc).split("; reinstall")[0]
    return None


def openvino_version() -> str | None:
    try:
        openvino = _import_openvino()
    except MissingDependency:
        return None
    return str(openvino.__version__).split("-")[0]


def _spec(port, graph_names: set[str] = frozenset(), fallback: str = "") -> TensorSpec:
    """A port's spec, named as the ONNX graph names it: a port can carry several tensor names (a detector's
    ``classes`` is also its producer's ``where_2``), and get_any_name picks any of them. A port with no name
    (an in-memory model from convert_model) gets ``fallback``."""
    shape = port.get_partial_shape()
    dims = tuple(d.get_length() if d.is_static else None for d in shape)
    names = sorted(port.get_names())
    name = next((n for n in names if n in graph_names), port.get_any_name() if names else fallback)
    return TensorSpec(name, dims, _OV_TYPES.get(port.get_element_type().get_type_name(), "float32"))


def _graph_io_names(path: Path) -> set[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {value.name for value in [*graph.input, *graph.output]}


class OvRunner(Runner):
    backend = "openvino"
    # f32: on CPUs with AMX or AVX512-BF16, OpenVINO's default runs an FP32 graph in bf16, a precision no
    # artifact of the run was checked in; the artifact's precision is what its name says. (None: OpenVINO's own
    # default, what benchmarks/peer_openvino.py gives a user's model.)
    precision_hint: str | None = "f32"

    def __init__(self, model_path: Path, threads: int | None = None, hint: str = "LATENCY") -> None:
        super().__init__()
        if hint not in HINTS:
            raise EdgepipeError(f"OpenVINO performance hint {hint!r}: choose {' or '.join(HINTS)}")
        self.model_path, self.threads, self.hint = Path(model_path), threads, hint

    def _read(self, core):
        """The openvino.Model to compile: the ONNX file, read as it is."""
        if not self.model_path.is_file():
            raise EdgepipeError(f"ONNX model not found: {self.model_path}")
        return core.read_model(str(self.model_path))

    def _graph_names(self) -> set[str]:
        return _graph_io_names(self.model_path)

    def open(self) -> None:
        openvino = _import_openvino()
        config = {"PERFORMANCE_HINT": self.hint}
        if self.precision_hint:
            config["INFERENCE_PRECISION_HINT"] = self.precision_hint
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        core = openvino.Core()
        try:
            self._compiled = core.compile_model(self._read(core), "CPU", config)
        except EdgepipeError:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError with multi-line C++ traces
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise EdgepipeError(f"{self.model_path}: OpenVINO cannot compile it ({first})") from None
        count = self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") if self.hint == "THROUGHPUT" else 1
        self._requests = [self._compiled.create_infer_request() for _ in range(max(1, int(count)))]
        names = self._graph_names()
        self._inputs = [_spec(port, names, f"input{i}") for i, port in enumerate(self._compiled.inputs)]
        self._outputs = [_spec(port, names, f"output{i}") for i, port in enumerate(self._compiled.outputs)]
        # A batch can be split across the streams only when every input and output carries it on a dynamic axis 0
        # (not a scalar, not NonMaxSuppression's [M, 3] selected indices with batch numbers inside).
        self._splittable = all(spec.shape and spec.shape[0] is None for spec in [*self._inputs, *self._outputs])

    def close(self) -> None:
        self._requests = []
        self._compiled = None

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @property
    def device(self) -> str:
        streams = f", {len(self._requests)} streams" if len(self._requests) > 1 else ""
        return f"cpu (OpenVINO {openvino_version()}, {self.hint.lower()} hint{streams})"

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from openvino import Tensor

        first = next(iter(feed.values()))
        batch = len(first) if first.ndim else 1
        # One request per stream, each on its own slice of the batch.
        count = max(1, min(len(self._requests), batch)) if self._splittable else 1
        bounds = [batch * part // count for part in range(count + 1)]  # (not np.linspace: 15 us a call)
        requests = self._requests[:count]
        for request, start, stop in zip(requests, bounds, bounds[1:], strict=False):
            for index, spec in enumerate(self._inputs):
                # shared_memory: the request reads the caller's (contiguous, prepared) array in place
                array = feed[spec.name] if count == 1 else feed[spec.name][start:stop]
                request.set_input_tensor(index, Tensor(array, shared_memory=True))
        if count == 1:
            requests[0].infer()
            # copies: a request's output tensors are reused by its next call
            return {spec.name: requests[0].get_output_tensor(index).data.copy()
                    for index, spec in enumerate(self._outputs)}
        for request in requests:
            request.start_async()
        for request in requests:
            request.wait()
        return {spec.name: np.concatenate([request.get_output_tensor(index).data for request in requests])
                for index, spec in enumerate(self._outputs)}
