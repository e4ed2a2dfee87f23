"""Prune for latency, not MACs: the least pruning whose latency, measured on the runtime that will run the artifact
at the deploy batch, meets a target.

A convolution's cost on a CPU runtime is not proportional to its MACs: each layer pays a fixed dispatch cost
whatever its width, and every call pays a fixed floor (binding the input, copying the output). So MACs are no
stand-in for latency; candidates are exported and timed instead:

1. **Refuse what cannot be met.** The runtime's per-call floor (a trivial graph of the same input at the batch,
   :func:`edgepipe.pruning.layer_latency.per_call_floor`) is the latency no pruning can go under.
2. **Candidates.** ``candidates(strength)`` returns a pruned copy of the model; the default prunes channels one shot
   at that width ratio (:func:`width_candidates`). Another maker (depth pruning, width + depth) plugs in the same way.
3. **Time each against the unpruned model**, interleaved in one process (edgepipe/timing.py), and bisect the
   strength between the last one that missed ``target x (1 - LATENCY_MARGIN)`` and the first that met it. The
   margin absorbs the run-to-run noise of re-measuring after fine-tuning (fine-tuning changes weights, not shapes).
   Candidates with the same layer shapes (channels come in steps of ``round_to``) are timed once.

TensorRT cannot be timed here (no GPU): its candidates are scored by a declared proxy, the per-layer times of a
``trtexec --exportProfile`` run on the device scaled by each layer's kept MAC fraction; every record says so.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from edgepipe.errors import EdgepipeError
from edgepipe.pruning.layer_latency import PROXY, per_call_floor, read_trtexec_profile, require_runtime, trtexec_profile

LATENCY_MARGIN = 0.05  # the search aims this far under the target, so the re-measured model still meets it
SEARCH_ITERATIONS = 6  # bisection steps after the bounds: the ratio to within MAX_RATIO / 64
Candidates = Callable[[float], nn.Module]  # strength in [0, max] -> a pruned copy (the model itself untouched)


def no_trt_profile_line() -> str:
    from edgepipe.runners.select import tensorrt_problem

    how = ("run `trtexec --onnx=model.onnx --exportProfile=profile.json --separateProfileRun` on the device and "
           "pass --latency-profile profile.json")
    if tensorrt_problem() is not None:
        return f"no GPU here to time TensorRT; {how}"
    return f"timing TensorRT candidates is not built in (only a device profile is read); {how}"


@dataclass
class LatencyPlan:
    """What the stage knows about the runtime before pruning: where it times, and the floor it cannot go under."""
    runtime: str
    batch: int
    target_ms: float | None
    floor_ms: float | None  # None on TensorRT (not measured here)
    profile: Path | None = None  # TensorRT: the trtexec profile of the unpruned model
    rounds: int = 5  # interleaved rounds of each candidate against the unpruned model ...
    seconds: float = 0.25  # ... each at least this long

    @property
    def proxy(self) -> bool:
        return self.runtime == "tensorrt"

    def as_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "batch": self.batch, "target_ms": self.target_ms, "floor_ms": self.floor_ms,
                "margin": LATENCY_MARGIN, "source": PROXY if self.proxy else "measured",
                "profile": str(self.profile) if self.profile else None}


def check_latency_request(config) -> Path | None:
    """The runtime ``config`` (PruneConfig) times on is usable here, or one line: not installed, or TensorRT with a
    latency target and no device profile; a TensorRT profile given is read now (a broken file is refused before
    any training or fine-tuning). Returns that profile, if any."""
    if config.latency_runtime != "tensorrt":
        require_runtime(config.latency_runtime)
        return None
    if config.latency_profile is None:
        if config.target_latency_ms is not None:
            raise EdgepipeError(no_trt_profile_line())
        return None
    profile = Path(config.latency_profile)
    read_trtexec_profile(profile)
    return profile


def plan_latency(config, input_shape, *, rounds: int = 5, seconds: float = 0.25) -> LatencyPlan:
    """Check the runtime and the target before anything is pruned (``config``: PruneConfig); one line when they
    cannot work: a runtime not installed, TensorRT without a profile, a target under the measured floor."""
    runtime, batch, target = config.latency_runtime, config.latency_batch, config.target_latency_ms
    profile = check_latency_request(config)
    if runtime == "tensorrt":
        return LatencyPlan(runtime, batch, target, None, profile, rounds=rounds, seconds=seconds)
    floor = per_call_floor(input_shape, runtime, batch, rounds=rounds, seconds=seconds)
    if target is not None and target <= floor:
        raise EdgepipeError(f"target {_ms(target)} ms is below {runtime}'s measured per-call floor {floor:.3f} ms at "
                            f"batch {batch} on this machine; no pruning can reach it")
    return LatencyPlan(runtime, batch, target, floor, rounds=rounds, seconds=seconds)


def profile_parent(config) -> dict[str, str]:
    """The trtexec profile as a parent of the prune manifest (by content: a new profile at the same path re-runs
    prune); {} without one."""
    from edgepipe.artifacts import sha256_file

    if config.latency_profile is None:
        return {}
    path = Path(config.latency_profile)
    if not path.is_file():
        raise EdgepipeError(f"--latency-profile {path}: no such file (make it on the device with trtexec "
                            "--exportProfile)")
    return {"latency_profile": sha256_file(path)}


def _ms(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else f"{value:.2g}"


def width_candidates(model: nn.Module, input_shape, options, gradient_batches=None) -> Candidates:
    """Channel pruning at a width ratio, one shot, on a copy (``options``: pruning.channel.ChannelOptions)."""
    from edgepipe.pruning.channel import build_pruner, pruning_step

    def make(ratio: float) -> nn.Module:
        trial = copy.deepcopy(model).cpu()
        pruner = build_pruner(trial, input_shape, options, ratio=ratio, steps=1)
        pruning_step(pruner, trial, options.importance, gradient_batches)
        return trial.eval()

    return make


def kept_mac_fraction(unpruned_onnx: Path, pruned_onnx: Path) -> dict[str, float]:
    """ONNX node -> MACs kept by the pruned graph (node names are the module's, so both exports share them)."""
    import onnx

    from edgepipe.complexity import macs_by_node

    before = macs_by_node(onnx.load(str(unpruned_onnx)))
    after = macs_by_node(onnx.load(str(pruned_onnx)))
    return {node: after.get(node, 0) / macs for node, macs in before.items() if macs}


class CandidateTimer:
    """Times candidates against the unpruned model on the plan's runtime (or scores them by the TensorRT proxy).
    A context manager: the unpruned export and its runner stay open for the whole search."""

    def __init__(self, unpruned: nn.Module, input_shape, plan: LatencyPlan) -> None:
        self.unpruned, self.input_shape, self.plan = unpruned, list(input_shape), plan
        self.rounds, self.seconds = plan.rounds, plan.seconds
        self.seen: dict[tuple, dict[str, float]] = {}

    def __enter__(self) -> CandidateTimer:
        from edgepipe.pruning.measure import export_for_timing

        self._stack = contextlib.ExitStack()
        self.scratch = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="edgepipe-latency-")))
        self.unpruned_onnx = export_for_timing(self.unpruned, self.input_shape, self.scratch / "unpruned.onnx")
        if not self.plan.proxy:
            from edgepipe.runners.select import runner_for_file
            from edgepipe.timing import available_cpus

            self.reference = self._stack.enter_context(runner_for_file(
                self.unpruned_onnx, "onnx", threads=available_cpus(), runtime=self.plan.runtime))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def __call__(self, candidate: nn.Module) -> dict[str, float]:
        """{"candidate_ms", "unpruned_ms"}: p50s measured interleaved (TensorRT: the proxy's sums)."""
        signature = tuple(tuple(p.shape) for p in candidate.state_dict().values())
        if signature not in self.seen:
            self.seen[signature] = self._time(candidate)
        return self.seen[signature]

    def _time(self, candidate: nn.Module) -> dict[str, float]:
        import numpy as np

        from edgepipe.pruning.measure import export_for_timing
        from edgepipe.runners.select import runner_for_file
        from edgepipe.timing import available_cpus, interleaved_p50s

        path = self.unpruned_onnx if candidate is self.unpruned else \
            export_for_timing(candidate, self.input_shape, self.scratch / f"candidate{len(self.seen)}.onnx")
        if self.plan.proxy:
            before = trtexec_profile(self.plan.profile, self.plan.batch)
            after = trtexec_profile(self.plan.profile, self.plan.batch, kept_mac_fraction(self.unpruned_onnx, path))
            return {"candidate_ms": after.total_ms, "unpruned_ms": before.total_ms}
        inputs = np.random.default_rng(0).standard_normal((self.plan.batch, *self.input_shape)).astype(np.float32)
        with runner_for_file(path, "onnx", threads=available_cpus(), runtime=self.plan.runtime) as runner:
            p50s = interleaved_p50s({"unpruned": self.reference, "candidate": runner}, inputs, rounds=self.rounds,
                                    seconds=self.seconds)
        return {"candidate_ms": p50s["candidate"], "unpruned_ms": p50s["unpruned"]}


def search_latency_ratio(unpruned: nn.Module, input_shape, plan: LatencyPlan, candidates: Candidates, *,
                         max_strength: float) -> dict[str, Any]:
    """The least strength in [0, ``max_strength``] whose candidate meets ``plan.target_ms`` (with the margin), by
    bisection on measured latency; the record says which strengths were tried and what each measured. When even
    ``max_strength`` misses, it is chosen and the record says so (``met: False``, why)."""
    goal = plan.target_ms * (1 - LATENCY_MARGIN)
    trials: list[dict[str, Any]] = []

    def meets(strength: float, timer: CandidateTimer) -> bool:
        timed = timer(candidates(strength)) if strength > 0 else timer(unpruned)
        trials.append({"ratio": round(strength, 4), **timed, "meets": timed["candidate_ms"] <= goal})
        return trials[-1]["meets"]

    with CandidateTimer(unpruned, input_shape, plan) as timer:
        if meets(0.0, timer):
            chosen, why = 0.0, "the unpruned model already meets it"
        elif not meets(max_strength, timer):
            chosen, why = max_strength, f"max ratio reached ({max_strength:.2f})"
        else:
            low, high = 0.0, max_strength
            for _ in range(SEARCH_ITERATIONS):
                middle = (low + high) / 2
                low, high = (low, middle) if meets(middle, timer) else (middle, high)
            chosen, why = high, None
    best = next(t for t in reversed(trials) if t["ratio"] == round(chosen, 4))
    return {"target_ms": plan.target_ms, "goal_ms": goal, "ratio": chosen, "predicted_ms": best["candidate_ms"],
            "met": best["meets"], "why": why, "trials": trials, **plan.as_dict()}


def verdict(plan: LatencyPlan, measured_ms: float, search: dict[str, Any]) -> dict[str, Any]:
    """Met or missed, by how much and why, for the fine-tuned model's re-measured latency."""
    target = plan.target_ms
    met = measured_ms <= target
    why = None
    if not met:
        floor = plan.floor_ms
        if not search["met"]:
            why = search["why"]
        else:  # the search's candidate met it: the same shapes re-measured slower
            why = (f"timing noise: the search measured this architecture at {search['predicted_ms']:.3f} ms; "
                   "re-measure on a quieter machine or aim lower")
        if floor is not None and floor >= 0.5 * measured_ms:
            why += f"; the per-call floor is {floor:.3f} ms of it"
    source = PROXY if plan.proxy else "measured"
    line = (f"latency {measured_ms:.3f} ms ({source}) {'meets' if met else 'misses'} the {target:.3f} ms target on "
            f"{plan.runtime} at batch {plan.batch}" + ("" if met else f" by {measured_ms - target:.3f} ms: {why}"))
    return {"target_ms": target, "measured_ms": measured_ms, "met": met, "missed_by_ms": max(0.0, measured_ms - target),
            "why": why, "source": source, "line": line}


def profile_before_after(onnx_paths: dict[str, Path], plan: LatencyPlan, *, rounds: int = 30,
                         seconds: float = 0.25) -> dict[str, Any]:
    """Per-layer latency of {"unpruned", "pruned"} ONNX exports on the plan's runtime at its batch (TensorRT: the
    profile, and the proxy for the pruned model); {} where TensorRT has no profile."""
    from edgepipe.pruning.layer_latency import profile_models

    if plan.proxy:
        if plan.profile is None:
            return {}
        kept = kept_mac_fraction(onnx_paths["unpruned"], onnx_paths["pruned"])
        before = trtexec_profile(plan.profile, plan.batch)
        known = {node for row in before.layers for node in [row.name]}
        if not any(module in known for module in _modules(kept)):
            raise EdgepipeError(f"{plan.profile}: none of its layers is a node of this model's ONNX export; profile "
                                "the unpruned model's export (`edgepipe export RUN`, then trtexec on the device)")
        return {"unpruned": before, "pruned": trtexec_profile(plan.profile, plan.batch, kept)}
    return profile_models(onnx_paths, plan.runtime, plan.batch, rounds=rounds, seconds=seconds)


def _modules(nodes) -> set[str]:
    from edgepipe.pruning.layer_latency import module_path

    return {module_path(node) for node in nodes}
