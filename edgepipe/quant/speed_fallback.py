"""The CPU track's speed fallback: keep a layer in float where int8 is measured slower on the runtime that will run
the artifact (quant/speed.py measures), accepted only while the mix stays within the budget quantize has left.

The measured decision is kept in edgepipe.cache, keyed by everything it depends on, so a rerun on this machine
makes the same bytes whatever its load (``retime`` measures again).
"""

from __future__ import annotations

import datetime
import itertools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe.artifacts import sha256_file
from edgepipe.errors import EdgepipeError
from edgepipe.progress import say
from edgepipe.quant.scoring import Judge
from edgepipe.run import INT8_CPU_ONNX as INT8_CPU
from edgepipe.timing import available_cpus

SPEED_DECISIONS = "cpu-speed-decisions"  # edgepipe.cache file name


@dataclass(frozen=True)
class SpeedProbe:
    """Where the CPU speed fallback measures: a batch of real inputs, the CPU runtimes the artifact may run on, and
    whether a cached decision is measured again (--retime)."""

    batch: np.ndarray
    runtimes: list[str]
    retime: bool = False


def speed_runtimes(requested: str) -> list[str]:
    """The CPU runtimes the speed decision may be made on: the one named, or (auto) every one installed."""
    from edgepipe.runners.select import installed_cpu_runtimes

    installed = installed_cpu_runtimes()
    if requested == "auto":
        return installed
    if requested not in installed:
        raise EdgepipeError(f"--speed-runtime {requested}: not installed here (installed: {', '.join(installed)}); "
                            "`pip install 'edgepipe[openvino]'` or pick another")
    return [requested]


def _runtime_versions(runtimes: list[str]) -> list[str]:
    import onnxruntime

    from edgepipe.runners.openvino import openvino_version

    versions = {"onnxruntime": onnxruntime.__version__, "openvino": openvino_version()}
    return [f"{runtime} {versions[runtime]}" for runtime in runtimes]


def _speed_decision_key(judge: Judge, layers: list, already_float: list[str], batch: np.ndarray, threads: int,
                        runtimes: list[str]) -> str:
    """Everything the CPU track's speed decision depends on: the graph's bytes, its candidate layers, what the
    accuracy fallback already keeps in float, the batch, the threads, the CPU, and the runtimes it may be made on
    with their versions (which of them runs the graph fastest is part of the decision)."""
    from edgepipe.cache import DecisionCache, cpu_fingerprint
    from edgepipe.quant.speed import MIN_GAIN

    return DecisionCache.key(schema=3, model=sha256_file(judge.prepared), layers=layers,
                             already_float=sorted(already_float), method=judge.method, batch=list(batch.shape),
                             threads=threads, cpu=cpu_fingerprint(),
                             runtimes=_runtime_versions(runtimes), min_gain=MIN_GAIN)


def cpu_float_where_faster(judge: Judge, tmp: Path, track, already_float: list[str], probe: SpeedProbe) -> dict:
    """quant/speed.py on the CPU track; the faster mix replaces tmp's int8-cpu model when it stays within budget.

    Measured on the runtime that will run the artifact: of the probe's runtimes, the one that runs the all-int8
    graph fastest at its batch (a layer OpenVINO runs fast in int8 can be slow on onnxruntime, and the other way
    round).
    The measured decision (that runtime, and which layers stay in float) is kept in edgepipe.cache, keyed by
    everything it depends on: a rerun on this machine reuses it (the same bytes come out, whatever the machine's
    load) unless ``probe.retime``; the summary says which ("decision": "measured", "reused" or "retimed")."""
    from edgepipe.cache import DecisionCache
    from edgepipe.quant.tracks import quantize_track, quantized_nodes

    threads = available_cpus()
    batch, runtimes, retime = probe.batch, probe.runtimes, probe.retime
    prepared, method = judge.prepared, judge.method
    layers = quantized_nodes(prepared, [tmp / INT8_CPU])  # weighted and activation-only (a QLinearMul) alike
    cache = DecisionCache(SPEED_DECISIONS)
    key = _speed_decision_key(judge, layers, already_float, batch, threads, runtimes)
    cached = None if retime else cache.get(key)
    if cached is not None:
        summary = dict(cached, decision="reused", cache=str(cache.path))
        say(f"quantize: CPU-track speed decision reused from {cache.path} (measured {cached.get('measured_at')}; "
            "--retime measures again)")
        if summary["kept_float"]:
            mix = quantize_track(prepared, prepared.parent / "cpu-speed-mix.onnx", track, method, judge.ranges,
                                 [*already_float, *summary["kept_float"]])
            summary = _accept_faster_mix(summary, mix, tmp, judge)
        return summary
    runtime, runtime_rounds = runtimes[0], None
    if len(runtimes) > 1:
        from edgepipe.quant.speed import fastest_runtime

        runtime, runtime_rounds = fastest_runtime(tmp / INT8_CPU, runtimes, batch, threads)
        say(f"quantize: the all-int8 CPU graph runs fastest on {runtime} at batch {len(batch)} ("
            + ", ".join(f"{name} {np.median(times):.3f} ms" for name, times in runtime_rounds.items())
            + "): the speed fallback measures there")
    summary = _measure_cpu_speed(judge, track, already_float, layers, SpeedProbe(batch, [runtime]))
    summary["runtime"] = runtime
    if runtime_rounds:
        summary["runtime_rounds_ms"] = {name: [round(t, 4) for t in times] for name, times in runtime_rounds.items()}
    mix = summary.pop("model", None)
    record = dict(summary, measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    cache.put(key, record)
    summary = dict(record, decision="retimed" if retime else "measured", cache=str(cache.path))
    if summary["kept_float"]:
        summary = _accept_faster_mix(summary, mix, tmp, judge)
    return summary


def _measure_cpu_speed(judge: Judge, track, already_float: list[str], layers: list, probe: SpeedProbe) -> dict:
    """Profile the CPU track node by node on the probe's runtime, confirm on the whole graph (quant/speed.py);
    "model" in the result is the faster mix, if any."""
    from edgepipe.quant.speed import MIN_GAIN, clearly_faster, keep_float_where_faster, profiler_for, timer_for
    from edgepipe.quant.tracks import graph_nodes, quantize_track

    prepared = judge.prepared
    (runtime,), batch, threads = probe.runtimes, probe.batch, available_cpus()
    probe_dir = Path(tempfile.mkdtemp(prefix="speed-", dir=prepared.parent))
    numbers = itertools.count()

    def build(excluded: list[str]) -> Path:
        path = probe_dir / f"cpu-{next(numbers)}.onnx"
        return quantize_track(prepared, path, track, judge.method, judge.ranges, excluded)

    say(f"quantize: profiling every node of the CPU track in int8 vs float on {runtime} (batch {len(batch)}, "
        f"{threads} threads)")
    found = keep_float_where_faster(layers, already_float, prepared, build,
                                    profiler_for(runtime, batch, threads, graph_nodes(prepared)),
                                    timer_for(runtime, batch, threads))
    summary = {"batch": len(batch), "threads": threads, "min_gain": MIN_GAIN, "kept_float": found.kept_float,
               "table": found.table, "confirmations": found.confirmations}
    if not found.kept_float:
        return summary
    # A mix that is no faster than the FP32 graph itself has given up INT8's size for nothing: then INT8 does
    # not pay for speed on this CPU, the int8 graph (the smallest) stays, and FP32 is the fast one.
    rounds = timer_for(runtime, batch, threads)({"fp32": prepared, "mix": found.model})
    versus = {label: float(np.median(times)) for label, times in rounds.items()}
    summary.update(fp32_ms=round(versus["fp32"], 4), mix_ms=round(versus["mix"], 4))
    if not clearly_faster(rounds["mix"], rounds["fp32"]):
        what = ("keeps only the accuracy fallback's float layers" if already_float else "stays fully quantized")
        summary.update(kept_float=[], reverted=f"the fastest mix ({versus['mix']:.3f} ms) is not {MIN_GAIN:.0%} faster "
                                              f"than FP32 ({versus['fp32']:.3f} ms) in every round: int8-cpu {what}, "
                                              "for size")
        say(f"quantize: INT8 does not pay for speed on this CPU (fastest mix {versus['mix']:.3f} ms vs FP32 "
            f"{versus['fp32']:.3f} ms at batch {len(batch)}); int8-cpu {what} (smallest file)")
        return summary
    summary["model"] = found.model
    return summary


def _accept_faster_mix(summary: dict, mix: Path, tmp: Path, judge: Judge) -> dict:
    """The faster mix becomes the int8-cpu artifact when it stays within the budget left."""
    drop = judge.drop_of(mix)
    if drop > judge.allowed:  # float layers should only help accuracy; if not, the budget wins over speed
        return dict(summary, kept_float=[], reverted=f"the faster mix loses {drop:.2f} {judge.task.unit} on val "
                                                     f"(budget left {judge.allowed:.2f})")
    shutil.copyfile(mix, tmp / INT8_CPU)
    for row in summary.get("table", []):
        if row["kept_float"]:
            say(f"quantize: CPU track keeps {row['node']} ({row['op']}) in float: its kernel takes "
                f"{row['float_ms']:.3f} ms vs {row['int8_ms']:.3f} ms in int8")
    confirmed = next((c for c in summary.get("confirmations", []) if c["faster"]), None)
    if confirmed is not None:
        say(f"quantize: with those in float the CPU track takes {confirmed['mix_ms']:.3f} ms vs "
            f"{confirmed['int8_ms']:.3f} ms all int8 (batch {summary['batch']})")
    return summary
