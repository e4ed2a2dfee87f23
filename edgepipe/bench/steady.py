"""Wait out a slow machine before each timed window, and say how often that was needed.

On shared cloud VMs (this project's CI machine is a 2-vCPU Firecracker VM) a vCPU intermittently runs at
about half speed for 5-60 s while nothing else runs inside the VM: a two-thread onnxruntime call then takes
exactly twice as long (measured: 0.046 <-> 0.091 ms p50 for the int8 resnet at batch 1), and two bench runs
a minute apart disagree by 60 %+. No statistic over the samples fixes that, because whole windows land in
the slow phase. So before each window a fixed probe (a small two-thread onnxruntime conv chain, built in
memory) is timed; while it is more than ``tolerance`` slower than the fastest probe seen, bench waits and
probes again, up to ``max_wait_s``. A run that *starts* in the slow phase only learns later what fast is,
so at the end every window whose probe was slow by the run's best is timed once more (``retake``). A run
can also spend its whole length in the slow phase (seen: 5 minutes), so each run's fastest probe is
remembered in ~/.cache/edgepipe (per CPU model, thread count and onnxruntime version) and a run starts
from the median of the last few. Waiting is bounded
per window and per run. The result records every wait, every retake and every window that still went
ahead on a slow machine, so a number is never silently from the slow phase.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepipe.timing import time_calls


def _probe_model() -> bytes:
    """Four 16-channel 3x3 conv+relu at 28x28: small parallel ops of the size the slow phase hurts most."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1
    nodes, previous = [], "x"
    for index in range(4):
        nodes.append(helper.make_node("Conv", [previous, "w"], [f"conv{index}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"conv{index}"], [f"relu{index}"]))
        previous = f"relu{index}"
    graph = helper.make_graph(nodes, "steadiness-probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 28, 28])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 16, 28, 28])],
                              [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


REMEMBERED_RUNS = 5  # the remembered "fast" is the median of the last few runs' bests, not one lucky minimum


def remembered_probes_path() -> Path:
    from edgepipe.cache import cache_dir

    return cache_dir() / "steady-probe.json"


@dataclass
class SteadyGate:
    threads: int
    tolerance: float = 0.2
    max_wait_s: float = 20.0
    max_total_wait_s: float = 180.0
    probe_seconds: float = 0.1
    remember: Path | None = None  # where the fastest probe ever seen on this machine is kept
    best_ms: float = float("inf")
    probes: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    window_probes: list[float] = field(default_factory=list)  # the probe each window went ahead on
    retakes: int = 0
    remembered_ms: float | None = None
    timer: Callable[[], float] | None = None  # ms of one probe; None: the built-in onnxruntime conv chain

    def __post_init__(self) -> None:
        import onnxruntime as ort

        self._key = f"probe 3 | {_cpu_model()} | threads {self.threads} | onnxruntime {ort.__version__}"
        if self.remember is not None and self.remember.is_file():
            try:
                recent = [float(v) for v in json.loads(self.remember.read_text())[self._key]]
                self.remembered_ms = float(np.median(recent)) if recent else None
            except (ValueError, KeyError, TypeError, OSError):
                self.remembered_ms = None  # an unreadable or foreign cache is simply not used
            if self.remembered_ms:
                self.best_ms = self.remembered_ms
        if self.timer is None:
            self.timer = self._onnxruntime_probe()

    def _onnxruntime_probe(self) -> Callable[[], float]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # The probe spins like any onnxruntime session: a non-spinning probe measured 0.095 ms in both phases and
        # missed them. Its spinning threads are idle again long before the window's 0.2 s warm-up ends.
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(_probe_model(), options, providers=["CPUExecutionProvider"])
        batch = np.random.default_rng(1).random((1, 16, 28, 28), dtype=np.float32)

        def timed() -> float:
            samples = time_calls(lambda: session.run(None, {"x": batch}), warmup=5, iters=10,
                                 seconds=self.probe_seconds)
            return float(np.percentile(samples, 50))

        return timed

    def probe(self) -> float:
        value = self.timer()
        self.probes.append(value)
        self.best_ms = min(self.best_ms, value)
        return value

    def calibrate(self, rounds: int = 5) -> None:
        """The machine's fast phase: the best of a few probes."""
        for _ in range(rounds):
            self.probe()

    def _steady_probe(self) -> float:
        started = time.perf_counter()
        budget = min(self.max_wait_s, max(0.0, self.max_total_wait_s - sum(self.waits)))
        latest = self.probe()
        while self._slow(latest) and time.perf_counter() - started < budget:
            time.sleep(0.5)
            latest = self.probe()
        if time.perf_counter() - started > 0.5:
            self.waits.append(time.perf_counter() - started)
        return latest

    def _slow(self, probe_ms: float) -> bool:
        return probe_ms > self.best_ms * (1 + self.tolerance)

    def wait_until_steady(self) -> int:
        """Before a window: probe; while slow, sleep and probe again (at most ``max_wait_s``). Returns the
        window's ticket for ``went_ahead_slow`` / ``retake``."""
        self.window_probes.append(self._steady_probe())
        return len(self.window_probes) - 1

    def went_ahead_slow(self, ticket: int) -> bool:
        """Judged against the fastest probe of the whole run so far."""
        return self._slow(self.window_probes[ticket])

    def retake(self, ticket: int) -> bool:
        """Wait for a steady machine; True when it is now faster than when window ``ticket`` was timed (then the
        caller times the window again and the new probe is recorded), False to keep the window as it was."""
        latest = self._steady_probe()
        if latest >= self.window_probes[ticket]:
            return False
        self.retakes += 1
        self.window_probes[ticket] = latest
        return True

    def save(self) -> None:
        """Remember this machine's fastest probe for the next run (best effort: a read-only home is fine)."""
        if self.remember is None or not self.probes:
            return
        try:
            known = json.loads(self.remember.read_text()) if self.remember.is_file() else {}
            recent = known.get(self._key) if isinstance(known.get(self._key), list) else []
            known[self._key] = [*recent, min(self.probes)][-REMEMBERED_RUNS:]
            self.remember.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.remember.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(known, indent=1))
            temporary.replace(self.remember)
        except (OSError, ValueError, TypeError):
            pass

    def summary(self) -> dict:
        slow = sum(self._slow(probe) for probe in self.window_probes)
        return {"probe": "4x conv3x3 16ch 28x28, onnxruntime, batch 1", "tolerance": self.tolerance,
                "probe_best_ms": round(self.best_ms, 5), "probe_median_ms": round(float(np.median(self.probes)), 5),
                "probe_best_remembered_ms": self.remembered_ms, "remembered_in": str(self.remember or ""),
                "windows": len(self.window_probes), "windows_that_waited": len(self.waits),
                "seconds_waited": round(float(sum(self.waits)), 1), "windows_retimed": self.retakes,
                "windows_timed_on_a_slow_machine": slow,
                "max_wait_s": self.max_wait_s, "max_total_wait_s": self.max_total_wait_s}


def _cpu_model() -> str:
    from edgepipe.cache import cpu_model

    return cpu_model()
