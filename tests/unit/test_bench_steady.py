"""bench/steady.py: wait out a slow phase of the machine before a timed window (scripted probe, no sleeping)."""

from __future__ import annotations

import json

import pytest

from edgepipe.bench import steady
from edgepipe.bench.steady import SteadyGate


@pytest.fixture()
def scripted(monkeypatch: pytest.MonkeyPatch):
    """A gate whose probe returns the given values in turn; sleeping advances a fake clock instead."""
    clock = [0.0]
    monkeypatch.setattr(steady.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    monkeypatch.setattr(steady.time, "perf_counter", lambda: clock[0])

    def make(values: list[float], **options) -> SteadyGate:
        return SteadyGate(threads=1, timer=iter(values).__next__, **options)  # the gate's own bookkeeping runs

    return make


def test_a_fast_machine_goes_straight_on(scripted) -> None:
    gate = scripted([1.0, 1.0, 1.05])
    gate.calibrate(rounds=2)
    gate.wait_until_steady()
    summary = gate.summary()
    assert summary["windows"] == 1 and summary["windows_that_waited"] == 0
    assert summary["windows_timed_on_a_slow_machine"] == 0


def test_a_slow_phase_is_waited_out(scripted) -> None:
    gate = scripted([1.0, 2.0, 2.0, 1.1])
    gate.calibrate(rounds=1)
    gate.wait_until_steady()
    summary = gate.summary()
    assert summary["windows_that_waited"] == 1 and summary["seconds_waited"] == 1.0
    assert summary["windows_timed_on_a_slow_machine"] == 0


def test_a_wait_is_bounded_and_the_window_is_reported_slow(scripted) -> None:
    gate = scripted([1.0] + [2.0] * 10, max_wait_s=2.0)
    gate.calibrate(rounds=1)
    gate.wait_until_steady()
    assert gate.summary()["windows_timed_on_a_slow_machine"] == 1


def test_windows_before_the_machine_showed_its_fast_phase_count_as_slow(scripted) -> None:
    gate = scripted([2.0, 2.0, 1.0], max_wait_s=0.0)  # the run began slow; fast only shows up later
    gate.calibrate(rounds=1)
    gate.wait_until_steady()
    gate.wait_until_steady()
    assert gate.summary()["windows_timed_on_a_slow_machine"] == 1


def test_the_real_probe_times_an_onnxruntime_session() -> None:
    gate = SteadyGate(threads=1, probe_seconds=0.01)
    assert gate.probe() > 0 and gate.best_ms == gate.probes[0]


def test_a_window_from_the_slow_phase_is_retaken_once_fast_is_known(scripted) -> None:
    gate = scripted([2.0, 2.0, 1.0, 1.0], max_wait_s=0.0)
    gate.calibrate(rounds=1)
    first, second = gate.wait_until_steady(), gate.wait_until_steady()
    assert gate.went_ahead_slow(first) and not gate.went_ahead_slow(second)
    assert gate.retake(first)
    summary = gate.summary()
    assert summary["windows_retimed"] == 1 and summary["windows_timed_on_a_slow_machine"] == 0


def test_a_retake_on_a_machine_no_faster_keeps_the_first_window(scripted) -> None:
    gate = scripted([1.0, 2.0, 2.5], max_wait_s=0.0)
    gate.calibrate(rounds=1)
    ticket = gate.wait_until_steady()
    assert not gate.retake(ticket)
    assert gate.summary()["windows_retimed"] == 0 and gate.went_ahead_slow(ticket)


def test_bench_keeps_freed_memory_on_glibc() -> None:
    import platform

    from edgepipe.bench.allocator import keep_freed_memory

    applied = keep_freed_memory()
    if platform.libc_ver()[0] == "glibc":
        assert applied is not None and "mmap threshold 32 MiB" in applied
    else:
        assert applied is None


def test_the_fastest_probe_is_remembered_across_runs(tmp_path) -> None:
    memory = tmp_path / "cache" / "steady-probe.json"
    first = SteadyGate(threads=1, probe_seconds=0.01, remember=memory)
    first.calibrate(rounds=2)
    first.save()
    second = SteadyGate(threads=1, probe_seconds=0.01, remember=memory)
    assert second.remembered_ms == pytest.approx(first.best_ms)
    assert second.best_ms == second.remembered_ms  # a run that starts slow already knows what fast is
    key = next(iter(json.loads(memory.read_text())))
    memory.write_text(json.dumps({key: [1.0, 0.01, 1.1, 1.2, 0.9]}))  # one lucky run does not set the bar
    assert SteadyGate(threads=1, remember=memory).remembered_ms == 1.0
    for _ in range(7):
        second.save()
    assert len(json.loads(memory.read_text())[key]) == 5  # only the last few runs are kept
    memory.write_text("not json")
    assert SteadyGate(threads=1, remember=memory).remembered_ms is None


def test_waiting_is_bounded_per_run(scripted) -> None:
    gate = scripted([1.0] + [2.0] * 40, max_wait_s=2.0, max_total_wait_s=3.0)
    gate.calibrate(rounds=1)
    for _ in range(3):
        gate.wait_until_steady()
    assert gate.summary()["seconds_waited"] <= 3.0 + 0.5 + 1e-9
