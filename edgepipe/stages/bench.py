"""`edgepipe bench`: latency, throughput, memory, size and complexity of every artifact of a run, side by side.

Everything is measured through the one runner contract in one process, and rounds are interleaved
(repeat r times: for each batch size, every artifact in a rotated order) so that drift on a shared machine
hits every artifact alike; speedups are ratios of numbers taken in the same run. Peak memory is measured
per artifact in a fresh process (bench/memory.py says exactly what). PyTorch runs eager with
torch.set_num_threads(threads) and inference_mode, the same thread count onnxruntime gets.

This module decides what is benched and plans it within the time budget; bench/rounds.py opens and times the
pairs, bench/rows.py makes the report rows; a pair's accuracy on a runtime eval did not use is scored here
(it needs the eval stage's test-split reader).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.markup import escape

from edgepipe.artifacts import Artifact
from edgepipe.bench.budget import Clock, mmss, probe_costs
from edgepipe.bench.inputs import FORMAT_BACKEND, Subject, make_batches, resolve_subject
from edgepipe.bench.rounds import Measured, Setup, open_measured, peak_memory, time_rounds
from edgepipe.bench.rows import add_notes, add_speedups, rows_of
from edgepipe.errors import EdgepipeError
from edgepipe.progress import piped_progress, say
from edgepipe.recipe import BenchConfig
from edgepipe.stages.context import recorded_recipe
from edgepipe.tasks import decide_budget, task_named
from edgepipe.timing import available_cpus

TORCH_NOTE = ("PyTorch eager runs with torch.set_num_threads(threads) and torch.inference_mode(); its per-call "
              "overhead dominates at batch 1, which is part of what an exported runtime saves.")


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
        measured, skipped = open_measured(stack, chosen, subject, batch_sizes, threads, engine_problem)
        if not measured:
            raise EdgepipeError(f"{run_or_model}: nothing could be benchmarked here "
                                f"({'; '.join(s['reason'] for s in skipped)})")
        setup = Setup(subject, config, threads,
                      {b: make_batches(b, subject.input_shape, subject.preprocessing) for b in batch_sizes})
        allocator = keep_freed_memory()
        eval_rows, report = _eval_rows(subject)
        test_samples = int((report.get("dataset") or {}).get("test_samples") or 0)
        scored_samples = [test_samples if _scores_itself(item, subject, eval_rows.get(item.entry.name, {})) else 0
                          for item in measured]
        plan = _plan(measured, setup, scored_samples, deploy_batch, time.perf_counter() - started)
        clock = Clock(started, plan.estimate_s)
        asked_config = config
        config = setup.config = _planned(config, plan)
        setup.batches = {size: setup.batches[size] for size in plan.batch_sizes}
        for item in measured:
            item.sizes = [size for size in item.sizes if size in setup.batches]
        measured = [item for item in measured if item.sizes]
        gate = time_rounds(measured, setup, stack, clock)
        devices = [{size: m.runners[size].device for size in m.sizes} for m in measured]

    task = task_named((report.get("task") or {}).get("name") or (recipe.task if recipe is not None else None))
    max_drop = decide_budget(task, recipe).max_drop
    scorer = _Scorer(eval_rows, subject, task, threads, plan.score_samples, clock)
    rows: list[dict[str, Any]] = []
    for item, where in zip(measured, devices, strict=True):
        rows += rows_of(item, where, scorer.score(item), peak_memory(item, setup, clock))
    add_speedups(rows)
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
    add_notes(result, runtime_note)
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


class _Scorer:
    """Each pair's score and drop: eval's, or, on a CPU runtime other than eval's onnxruntime (whose kernels round
    differently), its own, measured here: on the whole test split, or (``samples``, the time budget's cut) on its
    first ``samples``, where the drop is eval's full-split drop plus this runtime's paired difference from
    onnxruntime on those same samples."""

    def __init__(self, eval_rows: dict[str, dict], subject: Subject, task, threads: int, samples: int | None,
                 clock: Clock) -> None:
        self.eval_rows, self.subject, self.task, self.threads = eval_rows, subject, task, threads
        self.samples, self.clock = samples, clock

    def score(self, item: Measured) -> dict[str, Any]:
        evaluated = self.eval_rows.get(item.entry.name, {})
        if not _scores_itself(item, self.subject, evaluated):
            return evaluated
        from edgepipe.stages.evaluate import scores_on_runtimes

        original = self.eval_rows.get("original", {}).get("score")
        runtimes = [item.runtime] if self.samples is None else [item.runtime, "onnxruntime"]
        try:
            scores, used, total = scores_on_runtimes(self.subject.run_dir, item.directory, item.entry, runtimes,
                                                     self.threads, samples=self.samples)
        except (EdgepipeError, ValueError) as exc:  # no test split to reload: the pick treats it as unknown
            return {"score_note": f"not evaluated on {item.runtime}: {str(exc).splitlines()[0]}"}
        piped_progress(f"bench: scored {item.label} on {used} of {total} test samples {self.clock.status()}")
        task = self.task
        if used >= total:
            score = scores[item.runtime]
            return {"score": score, "drop": None if original is None else round(task.drop(original, score), 4)}
        # sampled: eval's full-split score moved by this runtime's paired difference from onnxruntime on the sample
        shift = scores[item.runtime] - scores["onnxruntime"]
        score = evaluated["score"] + shift
        return {"score": score, "drop": None if original is None else round(task.drop(original, score), 4),
                "score_note": f"on {item.runtime}: eval's onnxruntime score {shift:+.4g} (the two runtimes' "
                              f"difference on {used} of {total} test samples, cut by bench's time budget)"}


def _scores_itself(item: Measured, subject: Subject, evaluated: dict[str, Any]) -> bool:
    return item.runtime not in (None, "onnxruntime") and subject.run_dir is not None and "score" in evaluated


def _plan(measured: list[Measured], setup: Setup, scored_samples: list[int], deploy_batch: int, spent_s: float):
    """The run's plan (bench/budget.py) from a probe of every pair's cost, said in one line (``scored_samples``:
    per pair, the test samples bench must score it on itself)."""
    from edgepipe.bench.budget import PairCost, Plan, plan_run
    from edgepipe.bench.settings import candidates

    config, batches = setup.config, setup.batches
    probing = time.perf_counter()
    costs = probe_costs(measured, batches)
    spent_s += time.perf_counter() - probing
    pairs = [PairCost(item.label, costs[index], item.open_s,
                      {size: 0 if item.entry.format == "engine" else len(candidates(item.runtime, setup.threads, size))
                       for size in item.sizes}, scored_samples[index])
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
