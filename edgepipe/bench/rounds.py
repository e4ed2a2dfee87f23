"""What bench times: a runner per (artifact, runtime) pair, its runtime setting per batch size, and the timed
windows of every pair, interleaved (repeat r times: for each batch size, every pair in a rotated order) so that
drift on a shared machine hits every artifact alike."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import Artifact
from edgepipe.bench.budget import Clock
from edgepipe.bench.inputs import Subject, preprocess_raw
from edgepipe.errors import EdgepipeError
from edgepipe.progress import piped_progress, progress_bar
from edgepipe.recipe import BenchConfig
from edgepipe.timing import time_calls


@dataclass
class Setup:
    """What every pair of one bench run shares: the subject, the (planned) settings and the input batches."""

    subject: Subject
    config: BenchConfig
    threads: int
    batches: dict[int, tuple[np.ndarray, Any]]  # per batch size: (model input, raw uint8 images or None)


@dataclass
class Measured:
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

    @property
    def label(self) -> str:
        """The artifact's name, and its CPU runtime where it has one."""
        return self.entry.name + (f" on {self.runtime}" if self.runtime else "")


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


def open_measured(stack: ExitStack, chosen: list[tuple[Path, Artifact, str | None]], subject: Subject,
                  batch_sizes: list[int], threads: int, engine_problem: str | None
                  ) -> tuple[list[Measured], list[dict[str, Any]]]:
    """A runner for every chosen pair (kept open on ``stack``), and what was skipped and why. Fills
    ``subject.input_shape`` from the first model when the dataset did not record it."""
    from edgepipe.runners.select import open_runner

    measured: list[Measured] = []
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
        measured.append(Measured(directory, entry, runner, runtime, sizes,
                                 _complexity(directory, entry, runner, shape), open_s))
    return measured, skipped


def time_rounds(measured: list[Measured], setup: Setup, stack: ExitStack, clock: Clock):
    """Every measured pair's timed windows, interleaved: per repeat and batch size, every pair once in a rotated
    order. Returns the steadiness gate (None unless ``config.steady``)."""
    config, batches = setup.config, setup.batches
    gate = None
    if config.steady:
        from edgepipe.bench.steady import SteadyGate, remembered_probes_path

        gate = SteadyGate(setup.threads, remember=remembered_probes_path())
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
        _choose_settings(measured, setup, stack, bar)
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
                            preprocess_raw(raw, setup.subject.preprocessing)))
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


def _choose_settings(measured: list[Measured], setup: Setup, stack: ExitStack, bar: Any) -> None:
    """Per measured (artifact, runtime) and batch size: the runtime setting its timed windows use
    (bench/settings.py), probed when ``config.tune_settings`` and the runtime has more than one candidate. Fills
    ``runners`` and ``settings`` of every item."""
    from edgepipe.bench.settings import candidates, probe
    from edgepipe.runners.select import open_runner

    config = setup.config
    work = []
    for item in measured:
        for size in item.sizes:
            found = [] if item.entry.format == "engine" else candidates(item.runtime, setup.threads, size)
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
        batch = setup.batches[size][0]
        chosen, record = probe({setting: (lambda r=opened[setting], x=batch: r.infer(x)) for setting in found},
                               seconds=config.seconds / 5 if config.seconds else None,  # a time budget, if any
                               iters=3 if config.seconds else max(3, config.iters // 5))
        item.runners[size], item.settings[size] = opened[chosen], (chosen, record)
        bar.update(task, advance=1)


def peak_memory(item: Measured, setup: Setup, clock: Clock) -> dict[str, Any]:
    """The pair's peak memory per batch size, each in a fresh process (bench/memory.py)."""
    from edgepipe.bench.memory import measure_peak_memory

    if not setup.config.memory:
        return {"error": "not measured (memory=False or cut by the time budget)"}
    found = measure_peak_memory(item.directory, item.entry, item.sizes, setup.threads, setup.subject.input_shape,
                                runtime=item.runtime)
    piped_progress(f"bench: peak memory of {item.label} {clock.status()}")
    return found
