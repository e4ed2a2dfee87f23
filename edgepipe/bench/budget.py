"""bench's whole-run time budget: a plan made up front from a quick probe of what each call costs.

A 224-640 px model on a 2-core CPU takes 20-500 ms a call, so the settings that keep a 28 px model's
sub-millisecond p50s steady (100 calls and 0.5 s per window, 3 repeats, a settings probe per batch size,
every (artifact, runtime) pair scored on the full test split, a fresh process per pair for peak memory)
made bench take 8-13 minutes per model. So bench first times one call of every (pair, batch size), prices
every part of the run with those costs (``estimate``), and when the total does not fit the budget shrinks in
a fixed order (``SHRINK_ORDER``), each step only as far as needed, and records every cut in one line. Nothing
is cut silently: the plan's ``shrunk`` list goes into the result, its notes and the table caption.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

# Floors that keep a p50 meaningful: at least this many timed calls and this long per window (time_calls
# takes at least 5 calls whenever a window has a duration, so a slow model still gets a median of several).
MIN_ITERS = 10
MIN_SECONDS = 0.1
MIN_WARMUP_CALLS = 2
MIN_WARMUP_SECONDS = 0.05
MIN_SCORE_SAMPLES = 200  # below this a sampled score says little; the pair is then left unscored on that runtime
SCORE_SHARE = 0.25  # at most this share of the budget goes to scoring pairs on a runtime eval did not use
PROCESS_START_S = 4.0  # a fresh Python importing edgepipe and a runtime (the peak-memory child), measured ~3-4 s
PROBE_ROUNDS = 3  # bench/settings.probe's interleaved rounds

SHRINK_ORDER = ("repeats down to 2", "shorter windows (down to 10 calls / 0.1 s)", "no settings probe",
                "scoring on a sample", "no end-to-end windows", "no peak memory", "largest batch sizes dropped",
                "one repeat")


@dataclass
class PairCost:
    """What one (artifact, runtime) pair costs: seconds per call at each batch size, to open a runner, how many
    settings its probe would try per size, and (when bench must score it itself) its test split's size."""

    name: str
    call_s: dict[int, float]  # batch size -> seconds per call (the probe's)
    open_s: float = 0.0
    candidates: dict[int, int] = field(default_factory=dict)  # batch size -> settings the probe would try
    score_samples: int = 0  # samples bench scores this pair on (0: eval's score is used)


@dataclass
class Plan:
    """The settings bench times with, and what was cut from the asked-for ones to fit the budget."""

    repeats: int
    iters: int
    seconds: float | None
    warmup: int
    warmup_seconds: float
    tune_settings: bool
    end_to_end: bool
    memory: bool
    batch_sizes: list[int]
    score_samples: int | None  # None: every test sample
    budget_s: float | None
    estimate_s: float = 0.0
    shrunk: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"budget_s": self.budget_s, "estimate_s": round(self.estimate_s, 1), "shrunk": list(self.shrunk),
                "repeats": self.repeats, "iters": self.iters, "seconds": self.seconds, "warmup": self.warmup,
                "warmup_seconds": self.warmup_seconds, "tune_settings": self.tune_settings,
                "end_to_end": self.end_to_end, "memory": self.memory, "batch_sizes": list(self.batch_sizes),
                "score_samples": self.score_samples}

    def summary(self) -> str:
        """One line: what bench will spend, and what it cut to fit."""
        head = f"plan ~{self.estimate_s:.0f} s" + (f" of a {self.budget_s:.0f} s budget" if self.budget_s else "")
        if not self.shrunk:
            return head
        return f"{head}; to fit: {'; '.join(self.shrunk)} (--budget SECONDS spends more)"


def _window_s(call_s: float, iters: int, seconds: float | None) -> float:
    return max(iters * call_s, seconds or 0.0, 5 * call_s if seconds else 0.0)


def _warmup_s(call_s: float, warmup: int, warmup_seconds: float) -> float:
    return max(warmup * call_s, warmup_seconds, call_s)


def estimate(plan: Plan, pairs: list[PairCost], end_to_end_possible: bool = True) -> float:
    """Seconds the plan's timed windows, settings probe, scoring and memory children take, from the probe's costs."""
    total = 0.0
    windows_per_size = 2 if plan.end_to_end and end_to_end_possible else 1
    for pair in pairs:
        sizes = [size for size in plan.batch_sizes if size in pair.call_s]
        for size in sizes:
            call = pair.call_s[size]
            per_window = _warmup_s(call, plan.warmup, plan.warmup_seconds) + _window_s(call, plan.iters, plan.seconds)
            total += plan.repeats * windows_per_size * per_window
            tried = pair.candidates.get(size, 1)
            if plan.tune_settings and tried > 1:  # probe: rounds x candidates x (3 warm + max(3 calls, window/5))
                probe_window = max(3 * call, (plan.seconds or 0.0) / 5)
                total += (tried - 1) * pair.open_s + PROBE_ROUNDS * tried * (3 * call + probe_window)
        if pair.score_samples and sizes:
            largest = max(sizes)
            samples = pair.score_samples if plan.score_samples is None else min(pair.score_samples,
                                                                                plan.score_samples)
            total += pair.open_s + samples * pair.call_s[largest] / largest * _SCORE_COST
        if plan.memory and sizes:
            total += PROCESS_START_S + pair.open_s + sum(3 * pair.call_s[size] for size in sizes)
    return total


# Scoring runs the pair on the test split (and its onnxruntime twin on a sample, for a paired drop): about twice
# the pair's own per-sample cost.
_SCORE_COST = 2.0


def plan_run(asked: Plan, pairs: list[PairCost], *, spent_s: float = 0.0, deploy_batch: int = 1,
             end_to_end_possible: bool = True) -> Plan:
    """The asked-for plan when it fits ``asked.budget_s - spent_s`` (None: no budget), else the same shrunk in
    ``SHRINK_ORDER``, each step only as far as it must go, with every cut said in ``shrunk``."""
    plan = replace(asked, batch_sizes=list(asked.batch_sizes), shrunk=[])
    left = None if asked.budget_s is None else max(asked.budget_s - spent_s, 1.0)

    def cost(candidate: Plan) -> float:
        return estimate(candidate, pairs, end_to_end_possible)

    def fits(candidate: Plan) -> bool:
        return left is None or cost(candidate) <= left

    if left is not None:
        scored = max((p.score_samples for p in pairs), default=0)
        scoring_s = estimate(replace(plan, memory=False, batch_sizes=plan.batch_sizes, repeats=0,
                                     tune_settings=False), pairs, False)
        # scoring is capped at its share of the budget even when the rest would fit: eval keeps the full split
        if scored and scoring_s > SCORE_SHARE * left:
            plan.score_samples = _score_samples_for(plan, pairs, SCORE_SHARE * left)
    # Batch sizes first, though they are cut last: a size goes only when the plan cannot fit even with every other
    # cut at its floor; the cuts before it are then made against the sizes that stay (a batch of 64 that alone
    # overruns the budget must not also cost the small sizes their settings probe and memory).
    while len(plan.batch_sizes) > 1 and not fits(_every_cut(plan)):
        droppable = [size for size in plan.batch_sizes if size != deploy_batch]
        plan.batch_sizes.remove(max(droppable))
    if not fits(plan) and plan.repeats > 2:
        plan.repeats = 2
    if not fits(plan):
        plan = _shorter_windows(plan, cost, left)
    if not fits(plan) and plan.tune_settings:
        plan.tune_settings = False
    if not fits(plan) and plan.end_to_end and end_to_end_possible:
        plan.end_to_end = False
    if not fits(plan) and plan.memory:
        plan.memory = False
    if not fits(plan) and plan.repeats > 1:
        plan.repeats = 1
    plan.estimate_s = cost(plan)
    plan.shrunk = _what_shrank(asked, plan, pairs)
    if left is not None and plan.estimate_s > left:
        plan.shrunk.append(f"still ~{plan.estimate_s:.0f} s, over the {left:.0f} s left: the floors above "
                           "keep p50 meaningful")
    return plan


def _every_cut(plan: Plan) -> Plan:
    """``plan`` with every cut before the batch sizes' made: two repeats, floor windows, no probe, end-to-end or
    memory."""
    return _scaled(replace(plan, repeats=min(plan.repeats, 2), tune_settings=False, end_to_end=False, memory=False),
                   0.0)


def _score_samples_for(plan: Plan, pairs: list[PairCost], seconds: float) -> int | None:
    """The most samples every scored pair can be scored on in ``seconds`` together (None: all of them)."""
    per_sample = 0.0
    for pair in pairs:
        sizes = [size for size in plan.batch_sizes if size in pair.call_s]
        if pair.score_samples and sizes:
            largest = max(sizes)
            per_sample += pair.call_s[largest] / largest * _SCORE_COST
    if per_sample <= 0:
        return None
    most = max(p.score_samples for p in pairs)
    samples = int(seconds / per_sample)
    return None if samples >= most else max(samples, MIN_SCORE_SAMPLES)


def _shorter_windows(plan: Plan, cost, left: float) -> Plan:
    """Shrink iters, window length and warm-up together, by the factor that fits, down to their floors."""
    low, high = 0.0, 1.0  # bisect on one factor applied to all four
    best = _scaled(plan, 0.0)
    for _ in range(20):
        middle = (low + high) / 2
        if cost(_scaled(plan, middle)) <= left:
            low, best = middle, _scaled(plan, middle)
        else:
            high = middle
    return best


def _scaled(plan: Plan, factor: float) -> Plan:
    return replace(plan, batch_sizes=list(plan.batch_sizes),
                   iters=max(min(MIN_ITERS, plan.iters), math.ceil(plan.iters * factor)),
                   seconds=None if plan.seconds is None else max(min(MIN_SECONDS, plan.seconds),
                                                                 round(plan.seconds * factor, 3)),
                   warmup=max(min(MIN_WARMUP_CALLS, plan.warmup), math.ceil(plan.warmup * factor)),
                   warmup_seconds=max(min(MIN_WARMUP_SECONDS, plan.warmup_seconds),
                                      round(plan.warmup_seconds * factor, 3)))


def _what_shrank(asked: Plan, plan: Plan, pairs: list[PairCost]) -> list[str]:
    said = []
    if plan.repeats < asked.repeats:
        said.append(f"repeats {asked.repeats} -> {plan.repeats}")
    if (plan.iters, plan.seconds) != (asked.iters, asked.seconds):
        said.append(f"windows {asked.iters} calls/{asked.seconds} s -> {plan.iters} calls/{plan.seconds} s")
    if (plan.warmup, plan.warmup_seconds) != (asked.warmup, asked.warmup_seconds):
        said.append(f"warm-up {asked.warmup} calls/{asked.warmup_seconds} s -> {plan.warmup} calls/"
                    f"{plan.warmup_seconds} s")
    if asked.tune_settings and not plan.tune_settings:
        said.append("settings probe skipped (every runtime at its default)")
    if plan.score_samples is not None:
        total = max((p.score_samples for p in pairs), default=0)
        said.append(f"pairs eval did not score scored on {plan.score_samples} of {total} test samples "
                    "(eval keeps the full split)")
    if asked.end_to_end and not plan.end_to_end:
        said.append("end-to-end windows skipped")
    if asked.memory and not plan.memory:
        said.append("peak memory not measured")
    dropped = [size for size in asked.batch_sizes if size not in plan.batch_sizes]
    if dropped:
        said.append(f"batch sizes {', '.join(map(str, dropped))} dropped")
    return said


def mmss(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


@dataclass
class Clock:
    """Elapsed and (by the plan's estimate) remaining time, for bench's progress lines."""

    started: float
    planned_s: float
    planned_at: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> str:
        return mmss(time.perf_counter() - self.started)

    def status(self) -> str:
        left = self.planned_s - (time.perf_counter() - self.planned_at)
        return f"[{self.elapsed()} elapsed, ~{mmss(left)} left]"


def probe_costs(measured: list[Any], batches: dict[int, tuple[Any, Any]]) -> dict[int, dict[int, float]]:
    """Seconds one call of every pair takes at every batch size, for the plan to price the run with: at the
    smallest size, one warm call then the faster of up to two timed ones; larger sizes scaled linearly from it
    (an over-estimate where batching helps, and free: a 224 px batch of 64 takes seconds a call on 2 cores)."""
    costs: dict[int, dict[int, float]] = {}
    for index, item in enumerate(measured):
        smallest = min(item.sizes)
        batch = batches[smallest][0]
        item.runner.infer(batch)
        taken = []
        for _ in range(2):
            start = time.perf_counter()
            item.runner.infer(batch)
            taken.append(time.perf_counter() - start)
            if taken[0] > 0.05:
                break
        costs[index] = {size: min(taken) * size / smallest for size in item.sizes}
    return costs
