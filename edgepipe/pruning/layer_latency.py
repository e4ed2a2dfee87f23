"""Where a model's time goes on a runtime: per-layer latency, the per-call overhead outside every layer, and the
runtime's fixed per-call floor (what no pruning can go under).

The per-layer times come from the runtimes' own profilers, through the attribution quantize already owns
(edgepipe/quant/speed.py: ``ort_profiler``/``attribute_kernels`` for onnxruntime, ``ov_profiler``/
``attribute_layers`` for OpenVINO):

- onnxruntime: ``SessionOptions.enable_profiling`` and ``InferenceSession.end_profiling()``, a Chrome-trace JSON
  whose events with ``cat == "Node"`` and a name ``<node>_kernel_time`` carry each kernel's ``dur`` in us
  (onnxruntime.ai/docs/performance/tune-performance/profiling-tools.html; docs/python/examples/plot_profiling.py).
- OpenVINO: compiled with ``PERF_COUNT``, ``InferRequest.profiling_info`` lists ``ov::ProfilingInfo`` per executed
  layer (``node_name``, ``node_type``, ``real_time``, ``status``; docs.openvino.ai api/c_cpp_api/
  structov_1_1_profiling_info.html); layers that did not run report no time.
- TensorRT: no GPU here, so the profile is one the user made on the device with
  ``trtexec --exportProfile=FILE``: trtexec's ``Profiler::exportJSONProfile`` (NVIDIA/TensorRT
  samples/common/sampleReporting.cpp) writes a JSON list whose first element is ``{"count": N}`` (the profiled
  runs) and then one ``{"name", "timeMs", "averageMs", "medianMs", "percentage"}`` per engine layer (older releases
  have no ``medianMs``). Engine layers are named after the ONNX nodes they came from, fused ones joined by " + ",
  format conversions suffixed " input reformatter N" / " output reformatter N".

The total is the wall-clock p50 of a plain (unprofiled) call, measured interleaved with the other models
(edgepipe/timing.py); the per-call overhead is, per profiled run, the call's wall-clock time beyond all its kernels
(input binding, output copies, the runtime's own dispatch), the median over runs. Layer rows are keyed by the torch
module that made the node (TorchScript names nodes ``/stages/stages.0/conv1/Conv``: module ``stages.0.conv1``), so
before/after rows line up.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.errors import EdgepipeError

RUNTIMES = ("onnxruntime", "openvino", "tensorrt")  # the project's backend names (bench, runners/select.py)
PROXY = "proxy, not measured"
_REFORMATTER = re.compile(r" (input|output) reformatter \d+$")


@dataclass
class LayerRow:
    name: str  # the torch module (or the node / engine layer name when it maps to none)
    op_types: str
    median_ms: float  # over the profiled runs (trtexec: its medianMs, else averageMs)
    share: float  # of the sum of all layers


@dataclass
class LayerProfile:
    runtime: str
    batch: int
    layers: list[LayerRow]
    total_ms: float  # wall-clock p50 of one plain (unprofiled) call (TensorRT: the sum of the layers)
    overhead_ms: float  # per profiled call, the time outside every kernel (median over runs of call - kernels)
    source: str = "measured"  # or PROXY
    notes: list[str] = field(default_factory=list)
    profiled_call_ms: float | None = None  # median wall-clock of a profiled call: what the layers + overhead add to

    @property
    def layers_ms(self) -> float:
        return float(sum(row.median_ms for row in self.layers))

    def top(self, count: int) -> list[LayerRow]:
        return sorted(self.layers, key=lambda row: row.median_ms, reverse=True)[:count]

    def as_dict(self, top: int | None = None) -> dict[str, Any]:
        rows = self.top(top) if top else self.layers
        return {"runtime": self.runtime, "batch": self.batch, "source": self.source, "total_ms": self.total_ms,
                "layers_ms": self.layers_ms, "overhead_ms": self.overhead_ms, "profiled_call_ms": self.profiled_call_ms,
                "layer_count": len(self.layers),
                "layers": [asdict(row) for row in rows], "notes": self.notes}


def module_path(node_name: str) -> str:
    """The torch module a TorchScript-exported node came from: ``/stages/stages.0/conv1/Conv`` -> ``stages.0.conv1``
    (each scope repeats its parent: ``stages`` then ``stages.0``). A name without scopes is returned as it is."""
    parts = [part for part in node_name.split("/") if part]
    if len(parts) < 2 or not node_name.startswith("/"):
        return node_name
    path: list[str] = []
    for part in parts[:-1]:  # the last part is the op (Conv, Relu, Add)
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        elif path and part.startswith(".".join(path) + "."):
            path = [part]
        else:
            path.append(part)
    return ".".join(path) or node_name


def _rows(times_ms: dict[str, float], op_of: dict[str, str]) -> list[LayerRow]:
    """Per-node times -> one row per module (a Conv and the Add fused into it share a module)."""
    merged: dict[str, float] = {}
    ops: dict[str, list[str]] = {}
    for node, ms in times_ms.items():
        name = module_path(node)
        merged[name] = merged.get(name, 0.0) + ms
        op = op_of.get(node, "?")
        if op not in ops.setdefault(name, []):
            ops[name].append(op)
    total = sum(merged.values()) or 1.0
    return [LayerRow(name, "+".join(ops[name]), ms, ms / total) for name, ms in merged.items()]


def runtime_problem(runtime: str) -> str | None:
    """None when ``runtime`` can time an ONNX file here, else one line saying why not."""
    from edgepipe.runners.select import cpu_runtime_problem

    if runtime not in RUNTIMES:
        return f"unknown runtime {runtime!r}; choose {', '.join(RUNTIMES)}"
    if runtime == "tensorrt":
        return None  # never timed here: its profile comes from trtexec on the device
    problem = cpu_runtime_problem(runtime)
    if problem is None:
        return None
    extra = "`pip install 'edgepipe[openvino]'`" if runtime == "openvino" else "`pip install onnxruntime`"
    return f"{problem}: cannot time the model on {runtime}; install it ({extra}) or pick another --runtime"


def require_runtime(runtime: str) -> None:
    problem = runtime_problem(runtime)
    if problem:
        raise EdgepipeError(problem)


def _input_shape(onnx_path: Path) -> tuple[int, ...]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    first = next(value for value in graph.input if value.name not in initializers)
    dims = [d.dim_value for d in first.type.tensor_type.shape.dim][1:]
    if any(d <= 0 for d in dims):
        raise EdgepipeError(f"{onnx_path}: input '{first.name}' has dynamic dimensions past the batch; per-layer "
                            "latency needs a fixed input shape")
    return tuple(dims)


PROFILE_WARMUP = 3  # profiled calls thrown away first (the first calls allocate and pick kernels)


def profile_models(onnx_paths: dict[str, Path], runtime: str, batch: int, *, threads: int | None = None,
                   rounds: int = 30, seconds: float = 0.25) -> dict[str, LayerProfile]:
    """Per-layer profiles of several ONNX models of the same input on ``runtime`` at ``batch``: profiled runs and
    the unprofiled wall-clock p50s both interleaved across the models, so they see the same machine."""
    from edgepipe.quant.speed import CALL, GRAPH, ort_profiler, ov_profiler
    from edgepipe.quant.tracks import graph_nodes
    from edgepipe.runners.select import runner_for_file
    from edgepipe.timing import available_cpus, interleaved_p50s

    require_runtime(runtime)
    if runtime == "tensorrt":
        raise EdgepipeError("TensorRT is not profiled here: bring `trtexec --exportProfile` JSON from the device")
    threads = threads or available_cpus()
    shape = _input_shape(next(iter(onnx_paths.values())))
    inputs = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    nodes = {label: graph_nodes(path) for label, path in onnx_paths.items()}
    union = list({node[0]: node for found in nodes.values() for node in found}.values())
    profiler = (ov_profiler if runtime == "openvino" else ort_profiler)(inputs, threads, union, rounds=rounds,
                                                                         warmup=PROFILE_WARMUP)
    per_node = profiler(onnx_paths)
    with contextlib.ExitStack() as stack:
        runners = {label: stack.enter_context(runner_for_file(path, "onnx", threads=threads, runtime=runtime))
                   for label, path in onnx_paths.items()}
        totals = interleaved_p50s(runners, inputs, rounds=max(3, min(rounds, 5)), seconds=seconds)
    profiles = {}
    for label, times in per_node.items():
        op_of = {name: op for name, op, *_ in nodes[label]}
        # the median run, not the mean: on a shared machine one preempted run would move a layer's mean by 10x
        medians = {node: float(np.median(ms)) for node, ms in times.items() if node not in (GRAPH, CALL)}
        layers = _rows(medians, op_of)
        calls, kernels = np.asarray(times[CALL]), np.asarray(times.get(GRAPH) or np.zeros(len(times[CALL])))
        # paired per run: the call around the kernels (binding, dispatch, output copies, waits between layers);
        # OpenVINO can run layers in parallel, so their sum can pass the call: then nothing is left outside
        overhead = max(0.0, float(np.median(calls - kernels)))
        profiled = float(np.median(calls))
        notes = []
        if profiled > 1.1 * totals[label]:
            notes.append(f"a profiled call takes {profiled:.3f} ms, a plain one {totals[label]:.3f} ms: the "
                         "profiler's own cost is in the layer times; shares are still comparable")
        profiles[label] = LayerProfile(runtime, batch, layers, totals[label], overhead, notes=notes,
                                       profiled_call_ms=profiled)
    return profiles


def layer_latency(onnx_path: Path, runtime: str, batch: int, **options) -> LayerProfile:
    """The per-layer latency of one ONNX model on ``runtime`` at ``batch`` (``options``: threads, rounds, seconds)."""
    return profile_models({"model": Path(onnx_path)}, runtime, batch, **options)["model"]


def trivial_graph(input_shape: tuple[int, ...] | list[int], path: Path) -> Path:
    """An ONNX graph that does (almost) nothing with an input of ``input_shape``: one ReduceMax to a [N] output.
    Its latency is what a call costs on a runtime whatever the model: input binding, dispatch, output copy."""
    import onnx
    from onnx import TensorProto, helper

    rank = len(input_shape) + 1
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["input", "axes"], ["output"], keepdims=0)], "per_call_floor",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor("axes", TensorProto.INT64, [rank - 1], list(range(1, rank)))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # readable by every onnxruntime and OpenVINO the project supports
    onnx.save(model, str(path))
    return path


def per_call_floor(input_shape: tuple[int, ...] | list[int], runtime: str, batch: int, *, threads: int | None = None,
                   rounds: int = 5, seconds: float = 0.25) -> float:
    """p50 ms of the trivial graph on ``runtime`` at ``batch``: the fixed cost of a call, which no pruning removes."""
    import tempfile

    from edgepipe.runners.select import runner_for_file
    from edgepipe.timing import available_cpus, interleaved_p50s

    require_runtime(runtime)
    with tempfile.TemporaryDirectory(prefix="edgepipe-floor-") as scratch:
        path = trivial_graph(input_shape, Path(scratch) / "floor.onnx")
        inputs = np.zeros((batch, *input_shape), dtype=np.float32)
        with runner_for_file(path, "onnx", threads=threads or available_cpus(), runtime=runtime) as runner:
            return interleaved_p50s({"floor": runner}, inputs, rounds=rounds, seconds=seconds)["floor"]


def engine_layer_nodes(layer: str) -> list[str]:
    """The ONNX nodes a TensorRT engine layer came from: "A + B" fused, " input reformatter 0" stripped."""
    return [part.strip() for part in _REFORMATTER.sub("", layer).split(" + ") if part.strip()]


def read_trtexec_profile(path: Path) -> tuple[int, list[dict[str, Any]]]:
    """(profiled runs, [{"name", "averageMs", ...} per engine layer]) of ``trtexec --exportProfile`` JSON."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgepipeError(f"{path}: cannot read it as trtexec --exportProfile JSON ({exc})") from None
    if not (isinstance(data, list) and data and isinstance(data[0], dict) and "count" in data[0]):
        raise EdgepipeError(f"{path}: not a trtexec --exportProfile file (a JSON list starting with "
                            '{"count": N}, then one entry per layer)')
    layers = [entry for entry in data[1:] if isinstance(entry, dict)]
    broken = next((entry for entry in layers if not isinstance(entry.get("name"), str)
                   or not isinstance(entry.get("averageMs"), (int, float))), None)
    if broken is not None or not layers:
        raise EdgepipeError(f"{path}: a layer entry without a name and averageMs ({str(broken)[:80]}); "
                            "re-export it with trtexec --exportProfile")
    return int(data[0]["count"]), layers


def trtexec_profile(path: Path, batch: int, kept_fraction: dict[str, float] | None = None) -> LayerProfile:
    """A LayerProfile from ``trtexec --exportProfile`` JSON (per-layer average ms). ``kept_fraction`` (ONNX node ->
    the fraction of its MACs a pruned model keeps) scales each layer's time by its nodes' kept MACs: the declared
    proxy for the pruned model's TensorRT latency (layers without MACs - pooling, reformatters - keep their time)."""
    runs, entries = read_trtexec_profile(path)
    times: dict[str, float] = {}
    op_of: dict[str, str] = {}
    for entry in entries:
        nodes = engine_layer_nodes(entry["name"])
        node = nodes[0] if nodes else entry["name"]
        scale = 1.0
        if kept_fraction is not None:
            known = [kept_fraction[n] for n in nodes if n in kept_fraction]
            scale = max(known) if known else 1.0  # a fused Conv + Relu: the conv's fraction
        ms = entry.get("medianMs", entry["averageMs"])  # the median where this trtexec writes one
        times[node] = times.get(node, 0.0) + float(ms) * scale
        op_of[node] = "reformat" if _REFORMATTER.search(entry["name"]) else node.rsplit("/", 1)[-1] or "layer"
    layers = _rows(times, op_of)
    total = sum(row.median_ms for row in layers)
    notes = [f"trtexec profile {Path(path).name}: {runs} profiled runs; the batch is the profile's own"]
    if kept_fraction is not None:
        notes.append("pruned times = the profile's per-layer times x each layer's kept MAC fraction (" + PROXY + ")")
    return LayerProfile("tensorrt", batch, layers, total, 0.0, source=PROXY, notes=notes)
