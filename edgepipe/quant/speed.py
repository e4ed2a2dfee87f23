"""Latency-aware float fallback for the CPU INT8 track: keep a layer in float where INT8 is measured slower.

onnxruntime's int8 kernels only pay off when the channel counts fill the GEMM tiles. A stem convolution on a
1-channel image is the extreme case: on an AVX-512 VNNI EPYC, at batch 64, ResNet's 1->16 3x3 stem takes 0.52 ms
in int8 and 0.06 ms in float; EfficientNet's squeeze-excite ``Mul`` takes 5.2 ms as a QLinearMul and 0.8 ms in
float (onnxruntime profiler). So, like TensorRT's builder, which times each layer and runs it in FP32 when that
tactic wins, the CPU track keeps such layers in float. How it finds them, in a handful of measurements whatever
the model's size (timing the whole graph once per candidate took 27 minutes on EfficientNet-B0):

1. **Profile once.** The all-int8 graph and the float graph run side by side in interleaved rounds under
   onnxruntime's profiler, which times every kernel; each kernel is attributed to the node of the float graph it
   came from (by name: onnxruntime keeps it, adding ``_token_N`` to rewritten nodes, ``_nchwc`` to the output name
   of NCHWc convolutions, ``/...Fusion/`` to fused ones). A node is a candidate when its float kernel beats its
   int8 kernel by ``MIN_GAIN`` in every round and the saving is at least ``MIN_SHARE`` of the graph's time.
2. **Confirm on the whole graph.** The per-kernel view misses what a float island adds around it
   (QuantizeLinear/DequantizeLinear, layout changes), so the mix with the candidates in float is timed against
   the all-int8 graph, paired round by round; it is kept only when it is ``MIN_GAIN`` faster in every round.
   When it is not, the better half of the candidates (by saving) is tried, then the better half of that.

One good round is not evidence: a difference that does not stand out of the rounds' spread leaves the layer in
int8, the default, so a loaded machine changes the timings but not the artifact. Keeping a layer in float rarely
costs accuracy, and the caller re-checks the budget. The TensorRT track is left alone: TensorRT picks its own
per-layer tactics.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MIN_GAIN = 0.08  # below this, a whole-graph difference is within this shared machine's run-to-run noise
MIN_SHARE = 0.005  # a node saving less than this share of the int8 graph's time is not worth a float island
CONFIRMATIONS = 3  # whole-graph timings of candidate mixes: all candidates, then the better half, then a quarter

# excluded layer names -> path of the CPU-track model with those layers in float
BuildTrack = Callable[[list[str]], Path]
# {label: model path} -> {label: [p50 ms per round]}, measured side by side in interleaved rounds
TimeModels = Callable[[dict[str, Path]], dict[str, list[float]]]
# {label: model path} -> {label: {node of the float graph: [ms per round]}}, profiled side by side
ProfileModels = Callable[[dict[str, Path]], dict[str, dict[str, list[float]]]]

GRAPH = "(graph)"  # the key of a profile's whole-run total
CALL = "(call)"  # the key of each profiled run's wall-clock ms (the call around the kernels: binding, dispatch)


def clearly_faster(fast: list[float], slow: list[float], min_gain: float = MIN_GAIN) -> bool:
    """``fast`` beats ``slow`` by ``min_gain`` in every paired round, not just on the median."""
    return bool(fast) and all(s > 0 and 1.0 - f / s >= min_gain for f, s in zip(fast, slow, strict=True))


@dataclass
class SpeedFallback:
    model: Path
    kept_float: list[str]
    table: list[dict] = field(default_factory=list)
    confirmations: list[dict] = field(default_factory=list)


def keep_float_where_faster(layers: list[tuple[str, str]], already_float: list[str], float_model: Path,
                            build: BuildTrack, profile: ProfileModels, time_models: TimeModels) -> SpeedFallback:
    """Profile the int8 and the float graph once, then confirm the float candidates on the whole graph."""
    excluded = list(already_float)
    current = build(excluded)
    profiles = profile({"int8": current, "float": float_model})
    int8, flt = profiles["int8"], profiles["float"]
    graph_ms = float(np.median(int8[GRAPH])) if int8.get(GRAPH) else 0.0
    table, savings = [], {}
    for name, op in layers:
        if name in excluded:
            continue
        row = {"node": name, "op": op, "int8_ms": None, "float_ms": None, "gain": None, "worst_round_gain": None,
               "kept_float": False}
        if name not in int8 or name not in flt:
            row["note"] = "no kernel of its own in the " + ("int8" if name not in int8 else "float") + " profile"
            table.append(row)
            continue
        int8_ms, float_ms = float(np.median(int8[name])), float(np.median(flt[name]))
        gains = [1.0 - f / i if i > 0 else 0.0 for f, i in zip(flt[name], int8[name], strict=True)]
        row.update(int8_ms=round(int8_ms, 4), float_ms=round(float_ms, 4),
                   gain=round(1.0 - float_ms / int8_ms, 4) if int8_ms > 0 else 0.0,
                   worst_round_gain=round(min(gains), 4))
        if clearly_faster(flt[name], int8[name]) and int8_ms - float_ms >= MIN_SHARE * graph_ms:
            savings[name] = int8_ms - float_ms
        table.append(row)
    chosen = sorted(savings, key=lambda n: -savings[n])
    confirmations = []
    while chosen and len(confirmations) < CONFIRMATIONS:
        mix = build([*excluded, *chosen])
        rounds = time_models({"int8": current, "mix": mix})
        faster = clearly_faster(rounds["mix"], rounds["int8"])
        confirmations.append({"float": list(chosen), "int8_ms": round(float(np.median(rounds["int8"])), 4),
                              "mix_ms": round(float(np.median(rounds["mix"])), 4), "faster": faster})
        if faster:
            for row in table:
                row["kept_float"] = row["node"] in chosen
            return SpeedFallback(mix, [name for name, _ in layers if name in chosen], table, confirmations)
        chosen = chosen[:len(chosen) // 2]
    return SpeedFallback(current, [], table, confirmations)


def _runtime_timer(runtime: str, batch: np.ndarray, threads: int, rounds: int, seconds: float) -> TimeModels:
    """p50 per model and round on ``runtime``, from ``rounds`` interleaved windows of ``seconds`` each."""
    import contextlib

    from edgepipe.runners.select import runner_for_file
    from edgepipe.timing import interleaved_rounds

    def time_models(models: dict[str, Path]) -> dict[str, list[float]]:
        with contextlib.ExitStack() as stack:
            runners = {label: stack.enter_context(runner_for_file(path, "onnx", threads=threads, runtime=runtime))
                       for label, path in models.items()}
            return interleaved_rounds(runners, batch, rounds=rounds, seconds=seconds)

    return time_models


def ort_timer(batch: np.ndarray, threads: int, rounds: int = 3, seconds: float = 0.25) -> TimeModels:
    return _runtime_timer("onnxruntime", batch, threads, rounds, seconds)


def ov_timer(batch: np.ndarray, threads: int, rounds: int = 3, seconds: float = 0.25) -> TimeModels:
    """On OpenVINO as edgepipe's OvRunner compiles (f32, LATENCY hint, ``threads``)."""
    return _runtime_timer("openvino", batch, threads, rounds, seconds)


def timer_for(runtime: str, batch: np.ndarray, threads: int, **options) -> TimeModels:
    """The whole-graph timer of the CPU runtime the decision is made for."""
    return (ov_timer if runtime == "openvino" else ort_timer)(batch, threads, **options)


def profiler_for(runtime: str, batch: np.ndarray, threads: int, nodes: list[Node]) -> ProfileModels:
    """The per-node profiler of the CPU runtime the decision is made for."""
    return (ov_profiler if runtime == "openvino" else ort_profiler)(batch, threads, nodes)


def fastest_runtime(model: Path, runtimes: list[str], batch: np.ndarray, threads: int, rounds: int = 3,
                    seconds: float = 0.25) -> tuple[str, dict[str, list[float]]]:
    """Which CPU runtime runs ``model`` fastest at ``batch`` (the median of paired, interleaved rounds): the one
    that will run the int8-cpu artifact, so the one its float layers are chosen on. A runtime that refuses the
    graph is left out (the first, onnxruntime, must run it)."""
    import contextlib

    from edgepipe.errors import EdgepipeError
    from edgepipe.runners.select import runner_for_file
    from edgepipe.timing import interleaved_rounds

    with contextlib.ExitStack() as stack:
        runners = {}
        for runtime in runtimes:
            try:
                runners[runtime] = stack.enter_context(runner_for_file(model, "onnx", threads=threads,
                                                                       runtime=runtime))
            except EdgepipeError:  # a runtime that refuses the graph cannot be the one that runs it
                if runtime == runtimes[0]:
                    raise
        rounds_ms = interleaved_rounds(runners, batch, rounds=rounds, seconds=seconds)
    return min(runners, key=lambda runtime: float(np.median(rounds_ms[runtime]))), rounds_ms


def ov_profiler(batch: np.ndarray, threads: int, nodes: list[Node], rounds: int = 5, warmup: int = 2
                ) -> ProfileModels:
    """Per-node times (ms per round) of each model from OpenVINO's per-layer counters (``PERF_COUNT``), the
    models run in interleaved rounds. OpenVINO names a layer after the ONNX node it came from, a suffix after
    "/" for what it made of it (``node_Conv_138/WithoutBiases``; a fused Add/Relu runs inside the
    convolution's layer); layers that are only layout changes or FakeQuantize of a Q/DQ pair belong to no node
    of the float graph and count in ``GRAPH`` only; a layer can also carry its node's output name (a Gemm
    turned FullyConnected). Compiled as OvRunner compiles (f32, LATENCY, ``threads``)."""

    def profile(models: dict[str, Path]) -> dict[str, dict[str, list[float]]]:
        import openvino

        core = openvino.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                  "PERF_COUNT": True}
        requests = {label: core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()
                    for label, path in models.items()}
        counters: dict[str, list[list[tuple[str, float]]]] = {label: [] for label in models}
        calls: dict[str, list[float]] = {label: [] for label in models}
        for index in range(warmup + rounds):
            for label, request in requests.items():
                start = time.perf_counter()
                request.infer({0: batch})
                if index >= warmup:  # the counters are the last inference's
                    calls[label].append((time.perf_counter() - start) * 1000.0)
                    counters[label].append([(info.node_name, info.real_time.total_seconds() * 1000.0)
                                            for info in request.profiling_info])
        return {label: {**attribute_layers(counters[label], nodes), CALL: calls[label]} for label in models}

    return profile


def attribute_layers(per_round: list[list[tuple[str, float]]], nodes: list[Node]) -> dict[str, list[float]]:
    """OpenVINO's per-layer counters, one list of (layer name, ms) per round -> {node: [ms per round]} and
    ``GRAPH`` -> every layer's time per round."""
    # A layer is named after its node, or after the node's output tensor (a Gemm that became FullyConnected)
    owner = {**{outputs[0]: name for name, _, _, outputs in nodes if outputs}, **{name: name for name, *_ in nodes}}
    longest_first = sorted(owner, key=len, reverse=True)  # TorchScript exports name nodes "/layer1/conv/Conv"

    def node_of(layer: str) -> str | None:
        if layer in owner:
            return owner[layer]
        return next((owner[n] for n in longest_first if layer.startswith(n + "/")), None)

    rounds = len(per_round)
    times: dict[str, np.ndarray] = {}
    total = np.zeros(rounds)
    for index, layers in enumerate(per_round):
        for layer, ms in layers:
            total[index] += ms
            node = node_of(layer)
            if node is not None:
                times.setdefault(node, np.zeros(rounds))[index] += ms
    # a node whose layers never ran (fused into another, NOT_RUN) has no time of its own
    return {GRAPH: total.tolist(), **{node: values.tolist() for node, values in times.items() if values.any()}}


def ort_profiler(batch: np.ndarray, threads: int, nodes: list[Node], rounds: int = 5,
                 warmup: int = 2) -> ProfileModels:
    """Per-node kernel times (ms per round) of each model under onnxruntime's profiler, the models run in
    interleaved rounds; kernels are attributed to ``nodes`` (tracks.graph_nodes of the float graph)."""
    import tempfile

    import onnxruntime

    from edgepipe.quant.tracks import quiet_onnxruntime

    def profile(models: dict[str, Path]) -> dict[str, dict[str, list[float]]]:
        sessions, files = {}, {}
        with tempfile.TemporaryDirectory(prefix="profile-") as scratch, quiet_onnxruntime():
            for label, path in models.items():
                options = onnxruntime.SessionOptions()
                options.enable_profiling = True
                options.profile_file_prefix = str(Path(scratch) / label)
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                sessions[label] = onnxruntime.InferenceSession(str(path), options,
                                                               providers=["CPUExecutionProvider"])
            feeds = {label: {session.get_inputs()[0].name: batch} for label, session in sessions.items()}
            calls: dict[str, list[float]] = {label: [] for label in models}
            for index in range(warmup + rounds):
                for label, session in sessions.items():
                    start = time.perf_counter()
                    session.run(None, feeds[label])
                    if index >= warmup:
                        calls[label].append((time.perf_counter() - start) * 1000.0)
            for label, session in sessions.items():
                files[label] = session.end_profiling()
            return {label: {**attribute_kernels(json.loads(Path(files[label]).read_text()), nodes, warmup, rounds),
                            CALL: calls[label]} for label in models}

    return profile


# (name, op type, inputs, outputs) of a node of the float graph
Node = tuple[str, str, tuple[str, ...], tuple[str, ...]]
_TOKEN = re.compile(r"(_token_\d+)+$")
FUSED_DEPTH = 2  # Conv -> Add -> Relu: the deepest chain onnxruntime's NCHWc transformer fuses into one kernel


def attribute_kernels(events: list[dict], nodes: list[Node], warmup: int, rounds: int) -> dict[str, list[float]]:
    """onnxruntime profile events -> {node: [ms per round]} for the nodes a kernel can be traced to, and
    ``GRAPH`` -> the sum of all kernels per round; the first ``warmup`` runs are dropped. A fused NCHWc kernel is
    named after the output of the last node it absorbed (a Relu, an Add): it is the convolution's."""
    by_name = {name: (op, inputs) for name, op, inputs, _ in nodes}
    by_output = {output: name for name, _, _, outputs in nodes for output in outputs[:1]}
    producer = {output: name for name, _, _, outputs in nodes for output in outputs}
    longest_first = sorted(by_name, key=len, reverse=True)

    def fused_conv(name: str) -> str:
        frontier = [name]
        for _ in range(FUSED_DEPTH + 1):
            conv = next((n for n in frontier if by_name[n][0] == "Conv"), None)
            if conv is not None:
                return conv
            frontier = [producer[i] for n in frontier for i in by_name[n][1] if i in producer]
        return name

    def node_of(kernel: str) -> str | None:
        base = _TOKEN.sub("", kernel)
        if base in by_name:
            return base
        if base.endswith("_nchwc") and base[:-len("_nchwc")] in by_output:
            return fused_conv(by_output[base[:-len("_nchwc")]])
        return next((name for name in longest_first if base.startswith(name + "/")), None)  # ".../QuickGeluFusion/"

    per_kernel: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            per_kernel[event["name"][:-len("_kernel_time")]].append(event["dur"] / 1000.0)
    runs = warmup + rounds
    times: dict[str, np.ndarray] = {}
    total = np.zeros(rounds)
    for kernel, durations in per_kernel.items():
        if len(durations) % runs:  # not one call per run (a loop body): no per-run attribution
            continue
        per_run = np.asarray(durations).reshape(runs, -1).sum(axis=1)[warmup:]
        total += per_run
        node = node_of(kernel)
        if node is not None:
            times[node] = times.get(node, np.zeros(rounds)) + per_run
    return {GRAPH: total.tolist(), **{node: values.tolist() for node, values in times.items()}}
