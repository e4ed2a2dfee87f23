"""`edgepipe bench`: latency, throughput, memory, size and complexity of every artifact of a run, side by side.

Everything is measured through the one runner contract in one process, and rounds are interleaved
(repeat r times: for each batch size, every artifact in a rotated order) so that drift on a shared machine
hits every artifact alike; speedups are ratios of numbers taken in the same run. Peak memory is measured
per artifact in a fresh process (bench/memory.py says exactly what). PyTorch runs eager with
torch.set_num_threads(threads) and inference_mode, the same thread count onnxruntime gets.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from edgepipe.artifacts import Artifact
from edgepipe.bench.budget import Clock, mmss, probe_costs
from edgepipe.bench.inputs import FORMAT_BACKEND, Subject, make_batches, preprocess_raw, resolve_subject
from edgepipe.errors import EdgepipeError
from edgepipe.progress import piped_progress, progress_bar, say
from edgepipe.recipe import BenchConfig
from edgepipe.stages.context import recorded_recipe
from edgepipe.tasks import decide_budget, task_named
from edgepipe.timing import available_cpus, summarize, time_calls

TORCH_NOTE = ("PyTorch eager runs with torch.set_num_threads(threads) and torch.inference_mode(); its per-call "
              "overhead dominates at batch 1, which is part of what an exported runtime saves.")


def _input_shape(subject: Subject, name: str, spec_shape: tuple[int | None, ...]) -> tuple[int, ...]:
    """The per-sample input shape, checked against the dataset the model was trained on."""
    per_sample = tuple(spec_shape[1:])
    if subject.input_shape is not None:
        expected = tuple(subject.input_shape)
        fits = len(per_sample) == len(expected) and all(
            p is None or p == e for p, e in zip(per_sample, expected, strict=True))
        if not fits:
            shown = tuple("?" if p is None else p for p in per_sample)
            raise EdgepipeError(f"artifact '{name}' expects inputs of shape {shown} per sample but the dataset's "
                                f"samples are {expected}; re-export it from this run's model")
        return expected
    if any(p is None for p in per_sample):
        raise EdgepipeError(f"artifact '{name}' has dynamic non-batch input dims {per_sample}; bench it from its "
                            "run directory so the dataset gives the shape")
    return per_sample  # type: ignore[return-value]


def _complexity(directory: Path, entry: Artifact, runner: Any, input_shape: tuple[int, ...]) -> dict:
    from edgepipe.complexity import onnx_complexity, torch_complexity

    try:
        if entry.format == "torch":
            return torch_complexity(runner.model, input_shape)
        if entry.format == "onnx":
            return onnx_complexity(directory / entry.file)
    except Exception as exc:  # an odd graph must not cost the timing results
        return {"params": None, "macs": None, "error": f"{type(exc).__name__}: {str(exc)[:160]}"}
    return {"params": None, "macs": None}


def _spread_pct(per_repeat: list[np.ndarray]) -> float:
    p50s = [float(np.percentile(samples, 50)) for samples in per_repeat]
    return 0.0 if len(p50s) < 2 else (max(p50s) - min(p50s)) / float(np.median(p50s)) * 100.0


def _latency_fields(per_repeat: list[np.ndarray], batch: int) -> dict[str, Any]:
    latency = summarize(np.concatenate(per_repeat), batch)
    return {"latency_ms": {"p50": latency.p50_ms, "p90": latency.p90_ms, "p99": latency.p99_ms,
                           "mean": latency.mean_ms},
            "throughput_per_s": latency.throughput_per_s, "iters": latency.iters,
            "repeat_p50_ms": [float(np.percentile(s, 50)) for s in per_repeat],
            "p50_spread_pct": _spread_pct(per_repeat)}


def _eval_rows(subject: Subject) -> tuple[dict[str, dict], dict]:
    """Eval rows by artifact name from the report.json of the run (or of the run a model file is in), read only."""
    from edgepipe.report import read_report

    candidates = [subject.run_dir] if subject.run_dir else [subject.path.parent, subject.path.parent.parent]
    report = next(filter(None, map(read_report, candidates)), {})
    return {row["name"]: row for row in report.get("artifacts", [])}, report


def missing_evaluation(run_dir: Path) -> bool:
    """True when report.json has no eval row for some artifact of the run: the command evaluates first, so bench's
    pick knows every artifact's drop."""
    from edgepipe.report import read_report
    from edgepipe.run import RunLayout

    evaluated = {row.get("name") for row in read_report(run_dir).get("artifacts", []) if isinstance(row, dict)}
    return any(entry.name not in evaluated for _, entry in RunLayout(Path(run_dir)).artifacts())


@dataclass
class _Measured:
    """One (artifact, runtime) pair bench times, with what its windows use and what they took."""

    directory: Path
    entry: Artifact
    runner: Any  # opened with the runtime's default setting
    runtime: str | None  # the CPU runtime of an ONNX artifact (None: a torch model or an engine)
    sizes: list[int]  # the batch sizes it runs (a static batch: that one only)
    complexity: dict[str, Any]
    open_s: float = 0.0  # seconds opening its runner took (what each settings candidate's runner costs again)
    runners: dict[int, Any] = field(default_factory=dict)  # per batch size: the runner its windows use
    settings: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # per size: (Setting or None, probe or None)
    opened: dict[Any, Any] = field(default_factory=dict)  # per probed Setting: its runner
    compute: dict[int, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))  # per size: windows
    full: dict[int, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))  # end to end, per size


def bench(run_or_model: Path, config: BenchConfig | None = None) -> dict[str, Any]:
    """Benchmark every artifact of a run (or one model file); returns the result, which the caller hands to the
    report writer (edgepipe.report.write_report). The eval rows of the run's report.json give each row its score.

    Each timed window (per artifact, batch size and repeat) is at least ``iters`` calls and at least ``seconds``
    long, after ``warmup`` calls and ``warmup_seconds`` (trtexec's --iterations/--duration/--warmUp); the
    latency percentiles pool all repeats and ``p50_spread_pct`` is how far the repeats' p50s disagree
    ((max-min)/median). ``steady`` (off unless asked for): before each window, wait out a slow phase of the
    machine (bench/steady.py). ``config`` left out: the settings of the run's recipe (its bench: section). The
    deployable pick keeps within the run's budget (edgepipe.tasks.budget).
    """
    from edgepipe.bench.allocator import keep_freed_memory
    from edgepipe.bench.machine import machine_info
    from edgepipe.bench.select import pick_deployable
    from edgepipe.runners.select import tensorrt_problem

    started = time.perf_counter()
    subject = resolve_subject(Path(run_or_model))
    recipe = recorded_recipe(subject.recipe, f"{run_or_model}")
    recipe_bench = (recipe.bench if recipe is not None else None) or BenchConfig()
    config = config or recipe_bench
    batch_sizes = sorted(set(config.batch_sizes))
    threads = config.threads or available_cpus()  # explicit, so torch and onnxruntime get the same count
    deploy_batch = config.deploy_batch if "deploy_batch" in config.model_fields_set else recipe_bench.deploy_batch
    runtimes, runtime_note = _cpu_runtimes(config)
    chosen = _chosen(subject, runtimes, config.backends, run_or_model)
    engine_problem = tensorrt_problem() if any(e.format == "engine" for _, e, _ in chosen) else None
    with ExitStack() as stack:
        measured, skipped = _open_measured(stack, chosen, subject, batch_sizes, threads, engine_problem)
        if not measured:
            raise EdgepipeError(f"{run_or_model}: nothing could be benchmarked here "
                                f"({'; '.join(s['reason'] for s in skipped)})")
        batches = {b: make_batches(b, subject.input_shape, subject.preprocessing) for b in batch_sizes}
        allocator = keep_freed_memory()
        eval_rows, report = _eval_rows(subject)
        plan = _plan(measured, batches, config, threads, subject, eval_rows, report, deploy_batch,
                     time.perf_counter() - started)
        clock = Clock(started, plan.estimate_s)
        asked_config, config = config, _planned(config, plan)
        batches = {size: batches[size] for size in plan.batch_sizes}
        for item in measured:
            item.sizes = [size for size in item.sizes if size in batches]
        measured = [item for item in measured if item.sizes]
        gate = _time_rounds(measured, batches, stack, config, threads, subject.preprocessing, clock)
        devices = {(index, size): m.runners[size].device for index, m in enumerate(measured) for size in m.sizes}

    task = task_named((report.get("task") or {}).get("name") or (recipe.task if recipe is not None else None))
    max_drop = decide_budget(task, recipe).max_drop
    rows: list[dict[str, Any]] = []
    for index, item in enumerate(measured):
        scored = _scored(item, eval_rows, subject, task, threads, plan.score_samples, clock)
        peaks = _peaks(item, config, threads, subject.input_shape, clock)  # each in a fresh process
        rows += _rows(item, devices, index, scored, peaks)
    _add_speedups(rows)
    target = recipe.target if recipe is not None else None
    result = {
        "subject": str(subject.path),
        "recipe": recipe.name if recipe is not None else None,
        "target": target,
        "machine": machine_info(threads),
        "settings": {"batch_sizes": plan.batch_sizes, "warmup": config.warmup, "warmup_seconds": config.warmup_seconds,
                     "iters": config.iters, "seconds": config.seconds, "threads": threads, "repeats": config.repeats,
                     "backends": config.backends, "cpu_runtimes": runtimes, "end_to_end": config.end_to_end,
                     "allocator": allocator or "default", "input_shape": list(subject.input_shape),
                     "tune_settings": config.tune_settings, "memory": config.memory},
        "budget": {**plan.to_json(), "took_s": round(time.perf_counter() - started, 1),
                   "asked": {"repeats": asked_config.repeats, "iters": asked_config.iters,
                             "seconds": asked_config.seconds, "batch_sizes": batch_sizes}},
        "task": task.describe(),
        "max_drop": max_drop,
        "deploy_batch": deploy_batch,
        "rows": rows,
        "skipped": skipped,
        "p50_spread_pct_max": max((r["p50_spread_pct"] for r in rows), default=0.0),
        "steadiness": gate.summary() if gate else None,
        "deployable": pick_deployable(rows, batch=deploy_batch, max_drop=max_drop, unit=task.unit,
                                      target=target, engine_problem=engine_problem),
        "notes": [TORCH_NOTE, "end_to_end = preprocessing from raw uint8 images (scale, normalize) + inference; "
                  "compute = inference on the preprocessed batch",
                  "peak_memory_bytes: RSS high-water mark above a fresh process's baseline after importing the "
                  "backend (model + runtime + activations), one process per artifact"],
    }
    _add_notes(result, runtime_note)
    if plan.shrunk:
        result["notes"].insert(0, f"time budget {plan.budget_s:.0f} s: " + "; ".join(plan.shrunk))
    piped_progress(f"bench: done in {clock.elapsed()} (budget {mmss(plan.budget_s)})")
    return result


def _cpu_runtimes(config: BenchConfig) -> tuple[list[str], str | None]:
    """The CPU runtimes every ONNX artifact is timed on (every one installed unless the config names them: which
    wins depends on the model and the batch size), and a note when OpenVINO is missing."""
    from edgepipe.runners.select import cpu_runtime_problem, installed_cpu_runtimes

    installed = installed_cpu_runtimes()
    asked = sorted({*(config.cpu_runtimes or []),
                    *(b for b in config.backends or [] if b in ("onnxruntime", "openvino"))})
    missing = [runtime for runtime in asked if runtime not in installed]
    if missing:
        problems = [cpu_runtime_problem(name) or f"{name} is not installed here" for name in missing]
        raise EdgepipeError(f"CPU runtime {', '.join(missing)} cannot run here ({'; '.join(problems)}; installed: "
                            f"{', '.join(installed)}); `pip install 'edgepipe[openvino]'`")
    note = None
    if config.cpu_runtimes is None and "openvino" not in installed:
        why = cpu_runtime_problem("openvino") or "not installed"
        why = "OpenVINO is not installed" if "not installed" in why else why  # or "... installed but broken (...)"
        note = (f"{why}: ONNX artifacts were timed on onnxruntime only, so the CPU pick is among onnxruntime "
                "runs (`pip install 'edgepipe[openvino]'` times them on OpenVINO too)")
        say(f"[dim]bench: {escape(note)}[/dim]")  # escape: "[openvino]" is not markup
    return (installed if config.cpu_runtimes is None else list(config.cpu_runtimes)), note


def _chosen(subject: Subject, runtimes: list[str], backends: list[str] | None, where: Path
            ) -> list[tuple[Path, Artifact, str | None]]:
    """(stage dir, artifact, CPU runtime or None) for every pair the backends asked for allow."""
    chosen = []
    for directory, entry in subject.artifacts:
        for runtime in (runtimes if entry.format == "onnx" else [None]):
            if not backends or (runtime or FORMAT_BACKEND.get(entry.format)) in backends:
                chosen.append((directory, entry, runtime))
    if not chosen:
        raise EdgepipeError(f"{where}: no artifact runs on backend(s) {', '.join(backends or [])}")
    return chosen


def _open_measured(stack: ExitStack, chosen: list[tuple[Path, Artifact, str | None]], subject: Subject,
                   batch_sizes: list[int], threads: int, engine_problem: str | None
                   ) -> tuple[list[_Measured], list[dict[str, Any]]]:
    """A runner for every chosen pair (kept open on ``stack``), and what was skipped and why. Fills
    ``subject.input_shape`` from the first model when the dataset did not record it."""
    from edgepipe.runners.select import open_runner

    measured: list[_Measured] = []
    skipped: list[dict[str, Any]] = []
    for directory, entry, runtime in chosen:
        if entry.format == "engine" and engine_problem:
            skipped.append({"name": entry.name, "backend": "tensorrt", "reason": engine_problem})
            continue
        opening = time.perf_counter()
        runner = stack.enter_context(open_runner(directory, entry, threads=threads, runtime=runtime))
        open_s = time.perf_counter() - opening
        shape = _input_shape(subject, entry.name, runner.input_spec.shape)
        subject.input_shape = subject.input_shape or shape
        fixed = runner.input_spec.shape[0]
        sizes = [b for b in batch_sizes if fixed is None or b == fixed]
        if fixed is not None and len(sizes) < len(batch_sizes):
            skipped.append({"name": entry.name, "backend": runner.backend,
                            "reason": f"static batch {fixed}: other batch sizes skipped"})
        measured.append(_Measured(directory, entry, runner, runtime, sizes,
                                  _complexity(directory, entry, runner, shape), open_s))
    return measured, skipped


def _time_rounds(measured: list[_Measured], batches: dict[int, tuple[np.ndarray, Any]], stack: ExitStack,
                 config: BenchConfig, threads: int, preprocessing: dict[str, Any], clock: Clock):
    """Every measured pair's timed windows, interleaved: per repeat and batch size, every pair once in a rotated
    order. Returns the steadiness gate (None unless ``config.steady``)."""
    gate = None
    if config.steady:
        from edgepipe.bench.steady import SteadyGate, remembered_probes_path

        gate = SteadyGate(threads, remember=remembered_probes_path())
        gate.calibrate()
    windows: list[tuple[list[np.ndarray], int, Any, int | None]] = []  # (samples list, slot, call, gate ticket)

    def timed(call: Any) -> np.ndarray:
        return time_calls(call, warmup=config.warmup, iters=config.iters, seconds=config.seconds,
                          warmup_seconds=config.warmup_seconds)

    def time_window(store: list[np.ndarray], call: Any) -> None:
        ticket = gate.wait_until_steady() if gate else None
        store.append(timed(call))
        windows.append((store, len(store) - 1, call, ticket))

    repeats, sizes = config.repeats, sorted(batches)
    with progress_bar() as bar:
        _choose_settings(measured, batches, stack, bar, config, threads)
        if config.tune_settings:
            piped_progress(f"bench: settings probed {clock.status()}")
        progress = bar.add_task("bench", total=repeats * sum(len(m.sizes) for m in measured))
        for repeat in range(repeats):
            for size in sizes:
                active = [m for m in measured if size in m.sizes]
                shift = repeat % len(active) if active else 0
                for item in active[shift:] + active[:shift]:  # rotate who goes first each round
                    runner, (model_batch, raw_batch) = item.runners[size], batches[size]
                    bar.update(progress, description=f"bench {item.entry.name} b{size} r{repeat + 1}/{repeats}")
                    time_window(item.compute[size], lambda r=runner, x=model_batch: r.infer(x))
                    if config.end_to_end and raw_batch is not None:
                        time_window(item.full[size], lambda r=runner, raw=raw_batch: r.infer(
                            preprocess_raw(raw, preprocessing)))
                    bar.update(progress, advance=1)
            piped_progress(f"bench: round {repeat + 1}/{repeats} timed ({len(measured)} artifact/runtime pairs "
                           f"x batch {','.join(map(str, sizes))}) {clock.status()}")
        if gate:  # windows that went ahead before the run had seen how fast this machine can be
            slow = [w for w in windows if gate.went_ahead_slow(w[3])]
            if slow:
                retake = bar.add_task("bench: re-timing windows from a slow phase", total=len(slow))
            for store, slot, call, ticket in slow:
                if gate.retake(ticket):  # only when the machine is faster now than for the first take
                    store[slot] = timed(call)
                bar.update(retake, advance=1)
            gate.save()
    return gate


def _peaks(item: _Measured, config: BenchConfig, threads: int, input_shape: tuple[int, ...], clock: Clock
           ) -> dict[str, Any]:
    from edgepipe.bench.memory import measure_peak_memory

    if not config.memory:
        return {"error": "not measured (memory=False or cut by the time budget)"}
    found = measure_peak_memory(item.directory, item.entry, item.sizes, threads, input_shape, runtime=item.runtime)
    piped_progress(f"bench: peak memory of {item.entry.name}{_on(item)} {clock.status()}")
    return found


def _scored(item: _Measured, eval_rows: dict[str, dict], subject: Subject, task, threads: int,
            samples: int | None, clock: Clock) -> dict[str, Any]:
    """The pair's score and drop: eval's, or, on a CPU runtime other than eval's onnxruntime (whose kernels round
    differently), its own, measured here: on the whole test split, or (``samples``, the time budget's cut) on its
    first ``samples``, where the drop is eval's full-split drop plus this runtime's paired difference from
    onnxruntime on those same samples."""
    evaluated = eval_rows.get(item.entry.name, {})
    if not _scores_itself(item, subject, evaluated):
        return evaluated
    from edgepipe.stages.evaluate import scores_on_runtimes

    original = eval_rows.get("original", {}).get("score")
    runtimes = [item.runtime] if samples is None else [item.runtime, "onnxruntime"]
    try:
        scores, used, total = scores_on_runtimes(subject.run_dir, item.directory, item.entry, runtimes, threads,
                                                 samples=samples)
    except (EdgepipeError, ValueError) as exc:  # no test split to reload: the pick treats it as unknown
        return {"score_note": f"not evaluated on {item.runtime}: {str(exc).splitlines()[0]}"}
    piped_progress(f"bench: scored {item.entry.name}{_on(item)} on {used} of {total} test samples {clock.status()}")
    if used >= total:
        score = scores[item.runtime]
        return {"score": score, "drop": None if original is None else round(task.drop(original, score), 4)}
    # sampled: eval's full-split score moved by this runtime's paired difference from onnxruntime on the sample
    shift = scores[item.runtime] - scores["onnxruntime"]
    score = evaluated["score"] + shift
    return {"score": score, "drop": None if original is None else round(task.drop(original, score), 4),
            "score_note": f"on {item.runtime}: eval's onnxruntime score {shift:+.4g} (the two runtimes' difference "
                          f"on {used} of {total} test samples, cut by bench's time budget)"}


def _scores_itself(item: _Measured, subject: Subject, evaluated: dict[str, Any]) -> bool:
    return item.runtime not in (None, "onnxruntime") and subject.run_dir is not None and "score" in evaluated


def _rows(item: _Measured, devices: dict[tuple[int, int], str], index: int, evaluated: dict[str, Any],
          peaks: dict[str, Any]) -> list[dict[str, Any]]:
    """The pair's report rows, one per batch size."""
    entry, rows = item.entry, []
    for size in item.sizes:
        setting, probed = item.settings[size]
        row = {"name": entry.name, "backend": item.runner.backend, "device": devices[index, size],
               "setting": setting.to_json() if setting else None,
               "setting_label": setting.label if setting else None,
               # tuned: a setting other than the whole thread budget won the probe
               "setting_tuned": bool(probed) and probed["chosen"] != next(iter(probed["p50_ms"])),
               **({"setting_probe": probed} if probed else {}),
               "precision": entry.precision, "format": entry.format,
               "path": str((item.directory / entry.file).resolve()), "sha256": entry.sha256,
               "batch": size,
               **_latency_fields(item.compute[size], size),
               "peak_memory_bytes": peaks.get("peaks", {}).get(str(size)),
               "device_memory_bytes": peaks.get("device_memory_bytes"),
               "size_bytes": int(entry.size_bytes or (item.directory / entry.file).stat().st_size),
               "params": item.complexity.get("params"), "macs": item.complexity.get("macs"),
               "score": evaluated.get("score"), "drop": evaluated.get("drop")}
        if "error" in peaks:
            row["memory_note"] = peaks["error"]
        elif row["setting_tuned"]:
            row["memory_note"] = f"peak memory with the runtime's default setting, not {setting.label}"
        if item.full.get(size):
            row["end_to_end"] = _latency_fields(item.full[size], size)
        rows.append(row)
    return rows


def _add_notes(result: dict[str, Any], runtime_note: str | None) -> None:
    """What a reader of the timings should know first: a missing runtime, windows timed on a slow machine, load."""
    if runtime_note:
        result["notes"].append(runtime_note)
    slow = (result["steadiness"] or {}).get("windows_timed_on_a_slow_machine", 0)
    if slow:
        result["notes"].insert(0, f"{slow} of {result['steadiness']['windows']} timed windows went ahead while the "
                                  f"machine probe was over {result['steadiness']['tolerance']:.0%} slower than its "
                                  "best (a shared host): expect those artifacts' p50s to read high")
    machine = result["machine"]
    if machine.get("load_average_1min", 0) > machine.get("cpus_available", machine["cores"] or 1):
        result["notes"].insert(0, f"the machine was busy (1-min load {machine['load_average_1min']} on "
                                  f"{machine.get('cpus_available', machine['cores'])} CPUs): expect wide spreads; "
                                  "PyTorch's OpenMP pool suffers most from oversubscription")


def _choose_settings(measured: list[_Measured], batches: dict[int, tuple[np.ndarray, Any]], stack: ExitStack,
                     bar: Any, config: BenchConfig, threads: int) -> None:
    """Per measured (artifact, runtime) and batch size: the runtime setting its timed windows use
    (bench/settings.py), probed when ``config.tune_settings`` and the runtime has more than one candidate. Fills
    ``runners`` and ``settings`` of every item."""
    from edgepipe.bench.settings import candidates, probe
    from edgepipe.runners.select import open_runner

    work = []
    for item in measured:
        for size in item.sizes:
            found = [] if item.entry.format == "engine" else candidates(item.runtime, threads, size)
            item.runners[size] = item.runner  # opened with the default (found[0])
            item.settings[size] = (found[0] if found else None, None)
            if config.tune_settings and len(found) > 1:
                work.append((item, size, found))
    task = bar.add_task("bench: probing runtime settings", total=len(work))
    for item, size, found in work:
        bar.update(task, description=f"bench: settings of {item.entry.name} on {item.runtime} b{size}")
        opened = item.opened
        opened.setdefault(found[0], item.runner)
        for setting in found:
            if setting not in opened:
                opened[setting] = stack.enter_context(open_runner(
                    item.directory, item.entry, threads=setting.threads, runtime=item.runtime, hint=setting.hint))
        batch = batches[size][0]
        chosen, record = probe({setting: (lambda r=opened[setting], x=batch: r.infer(x)) for setting in found},
                               seconds=config.seconds / 5 if config.seconds else None,  # a time budget, if any
                               iters=3 if config.seconds else max(3, config.iters // 5))
        item.runners[size], item.settings[size] = opened[chosen], (chosen, record)
        bar.update(task, advance=1)


def _add_speedups(rows: list[dict[str, Any]]) -> None:
    """speedup_vs_original = original p50 / artifact p50 at the same batch size, from this same run;
    ``speedup_unreliable`` says why when the timings cannot carry the ratio (bench/select.py: ratio_doubt)."""
    from edgepipe.bench.select import ratio_doubt

    originals = {r["batch"]: r for r in rows if r["name"] == "original"}
    for row in rows:
        original = originals.get(row["batch"])
        row["speedup_vs_original"] = (original["latency_ms"]["p50"] / row["latency_ms"]["p50"]
                                      if original else None)
        doubt = ratio_doubt(row, original) if original and row is not original else None
        if doubt:
            row["speedup_unreliable"] = doubt
        if original and "end_to_end" in row and "end_to_end" in original:
            row["end_to_end"]["speedup_vs_original"] = (original["end_to_end"]["latency_ms"]["p50"]
                                                        / row["end_to_end"]["latency_ms"]["p50"])



def _on(item: _Measured) -> str:
    return f" on {item.runtime}" if item.runtime else ""


def _plan(measured: list[_Measured], batches: dict[int, tuple[np.ndarray, Any]], config: BenchConfig,
          threads: int, subject: Subject, eval_rows: dict[str, dict], report: dict[str, Any], deploy_batch: int,
          spent_s: float):
    """The run's plan (bench/budget.py) from a probe of every pair's cost, said in one line."""
    from edgepipe.bench.budget import PairCost, Plan, plan_run
    from edgepipe.bench.settings import candidates

    probing = time.perf_counter()
    costs = probe_costs(measured, batches)
    spent_s += time.perf_counter() - probing
    test_samples = int((report.get("dataset") or {}).get("test_samples") or 0)
    pairs = [PairCost(item.entry.name + _on(item), costs[index], item.open_s,
                      {size: 0 if item.entry.format == "engine" else len(candidates(item.runtime, threads, size))
                       for size in item.sizes},
                      test_samples if _scores_itself(item, subject, eval_rows.get(item.entry.name, {})) else 0)
             for index, item in enumerate(measured)]
    asked = Plan(repeats=config.repeats, iters=config.iters, seconds=config.seconds, warmup=config.warmup,
                 warmup_seconds=config.warmup_seconds, tune_settings=config.tune_settings,
                 end_to_end=config.end_to_end, memory=config.memory, batch_sizes=sorted(batches),
                 score_samples=None, budget_s=config.budget_s)
    plan = plan_run(asked, pairs, spent_s=spent_s, deploy_batch=deploy_batch,
                    end_to_end_possible=any(raw is not None for _, raw in batches.values()))
    say(f"bench: {len(pairs)} artifact/runtime pairs x batch {','.join(map(str, plan.batch_sizes))}: "
        f"{escape(plan.summary())}")
    return plan


def _planned(config: BenchConfig, plan) -> BenchConfig:
    return config.model_copy(update={"repeats": plan.repeats, "iters": plan.iters, "seconds": plan.seconds,
                                     "warmup": plan.warmup, "warmup_seconds": plan.warmup_seconds,
                                     "tune_settings": plan.tune_settings, "end_to_end": plan.end_to_end,
                                     "memory": plan.memory, "batch_sizes": plan.batch_sizes})
