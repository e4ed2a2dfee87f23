"""kill -9 in the middle of every stage: the previous artifact stays whole, nothing half-written is taken as
complete, and running the same command again succeeds and leaves no leftovers.

The kill lands the moment the stage's staging or scratch directory appears in the run, i.e. while it is
writing. train is killed when its first epoch checkpoint appears (mid-training): its staging directory lives
for only the few milliseconds of the final save, which a loaded CI machine's poller missed once.
eval and bench write one report file in microseconds, so they are killed at 60 % of the time an
uninterrupted run took, in the middle of their work. The instant between the two renames of a swap is
covered by tests/unit/test_artifacts.py (``recover``): no timer can hit a window of microseconds.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from helpers.runs import TARGET, edgepipe_process, tiny_pipeline_recipe

from edgepipe.artifacts import MANIFEST, read_manifest, verify_artifacts


def _stage_commands(case: Path) -> dict[str, tuple[list[str], str | None]]:
    """stage -> (edgepipe arguments, glob (in the run) of the first temporary the stage writes)."""
    run = case / "run"
    recipe = tiny_pipeline_recipe(case / "again.yaml", train={"epochs": 3, "batch_size": 32, "lr": 0.01, "seed": 1})
    return {
        "train": (["train", str(recipe), "--out", str(run)], ".train.partial/last.pt"),
        "prune": (["prune", str(run), "--ratio", "0.5", "--finetune-epochs", "1"], ".prune.*"),
        "export": (["export", str(run), "--exporter", "torchscript"], ".export.tmp-*"),
        "quantize": (["quantize", str(run), "--no-cpu-speed-fallback", "--max-drop", "10"], ".quantize.*"),
        "eval": (["eval", str(run), "--max-drop", "10"], None),
        "bench": (["bench", str(run), "--no-memory", "--no-steady", "--iters", "3", "--repeats", "1", "--seconds",
                   "0.01", "--batch", "1"], None),
        "bundle": (["bundle", str(run), "--target", TARGET, "--out", str(run / f"bundle-{TARGET}")],
                   f".bundle-{TARGET}.tmp-*"),
    }


def _kill_when_writing(args: list[str], run: Path, pattern: str | None, after: float = 240) -> bool:
    """Start edgepipe, SIGKILL it as soon as something matching ``pattern`` appears in ``run`` (or ``after``
    seconds); True if it was killed before it finished."""
    process = edgepipe_process(*args)
    deadline = time.monotonic() + after
    try:
        while process.poll() is None:
            now = time.monotonic()
            if now >= deadline or (pattern and next(run.glob(pattern), None) is not None):
                process.send_signal(signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.002)
        return False
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _run(args: list[str]) -> int:
    process = edgepipe_process(*args)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return process.returncode


def _assert_run_is_consistent(run: Path) -> None:
    """Every stage directory that a reader would take (a visible one with a manifest) is complete."""
    for directory in run.iterdir():
        if directory.is_dir() and not directory.name.startswith(".") and (directory / MANIFEST).is_file():
            assert verify_artifacts(directory, read_manifest(directory)), f"{directory} is incomplete"
    for name in ("report.json",):
        if (run / name).exists():
            json.loads((run / name).read_text())


@pytest.mark.parametrize("stage", ["train", "prune", "export", "quantize", "eval", "bench", "bundle"])
def test_kill_9_mid_stage_keeps_the_previous_artifact_and_the_rerun_succeeds(stage, case_dir):
    run = case_dir / "run"
    args, pattern = _stage_commands(case_dir)[stage]
    written = run / stage if stage not in ("eval", "bench") else None
    if stage == "bundle":
        written = run / f"bundle-{TARGET}"
    before = (written / MANIFEST).read_bytes() if written is not None and (written / MANIFEST).is_file() else None

    after = 240.0
    if pattern is None:
        started = time.monotonic()
        assert _run(args) == 0
        after = 0.6 * (time.monotonic() - started)
        before = (run / "report.json").read_bytes()
    assert _kill_when_writing(args, run, pattern, after), f"{stage} finished before it was killed"
    _assert_run_is_consistent(run)
    if before is not None:
        now = (written / MANIFEST) if written is not None else run / "report.json"
        assert now.read_bytes() == before, "the previous artifact was replaced by a killed stage"

    assert _run(args) == 0
    _assert_run_is_consistent(run)
    leftovers = [entry.name for entry in run.iterdir() if ".tmp-" in entry.name or ".old-" in entry.name]
    assert leftovers == [], leftovers
