"""A size someone declares is bounded before anything is allocated (edgepipe.limits, device/bounds.py).

Each case runs edgepipe (or the bundled device runtime) in a child process and measures that child alone with
wait4's rusage: one line, exit 2, within 5 s, peak RSS under 1 GiB, nothing on disk changed. Before the bounds,
`bench --batch 1000000` passed 4 GiB of RSS in 12 s and a reference.npz declaring 10^12 samples ended in
numpy's "Unable to allocate 2.79 PiB" traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.hostile import child_usage, deep_json_bundle_manifest, huge_reference, npy_declaring
from helpers.recipes import REPO
from helpers.runs import TARGET, snapshot, tiny_pipeline_recipe

SECONDS = 5.0
PEAK_RSS = 1 << 30
CLI = "import sys; from edgepipe.cli.main import main; sys.argv = ['edgepipe', *sys.argv[1:]]; main()"


def _edgepipe(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, *args]


def _device(case: Path, command: str, *args: str, python: str = sys.executable) -> list[str]:
    bundle = case / "run" / f"bundle-{TARGET}"
    return [python, str(bundle / "edgepipe_device.py"), command, str(bundle), *args]


def _system_python_with_numpy() -> str:
    """The machine's own python3 (not the test's virtualenv): what runs the device runtime on a Jetson."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    python = shutil.which("python3", path=path)
    if python is None or subprocess.run([python, "-c", "import numpy"], capture_output=True,
                                        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).returncode:
        pytest.skip("no system python3 with numpy here (the device runtime's own interpreter)")
    return python


@dataclass(frozen=True)
class Declared:
    name: str
    prepare: Callable[[Path], list[str]]  # case dir -> the command line
    expected: str

    def __str__(self) -> str:
        return self.name


def _huge_bundle(case: Path) -> Path:
    bundle = case / "run" / f"bundle-{TARGET}"
    huge_reference(bundle)
    return bundle


CASES = [
    Declared("bench-batch-a-million", lambda c: _edgepipe("bench", str(c / "run"), "--batch", "1000000"),
             "--batch 1000000 is above edgepipe's batch limit of 4096 samples; set EDGEPIPE_MAX_BATCH=1000000"),
    Declared("bench-batch-one-of-several", lambda c: _edgepipe("bench", str(c / "run"), "--batch", "1,8,2000000"),
             "--batch 2000000"),
    Declared("recipe-bench-batch-absurd", lambda c: _edgepipe("pipeline", str(tiny_pipeline_recipe(
        c / "absurd.yaml", bench={"batch_sizes": [1, 10**9]})), "--out", str(c / "run")), "bench.batch_sizes"),
    Declared("recipe-train-batch-absurd", lambda c: _edgepipe("train", str(tiny_pipeline_recipe(
        c / "absurd.yaml", train={"epochs": 1, "batch_size": 10**9})), "--out", str(c / "run")), "train.batch_size"),
    Declared("quantize-speed-batch-absurd", lambda c: _edgepipe("quantize", str(c / "run"), "--speed-batch",
                                                                  "100000000", "--out", str(c / "q")),
             "EDGEPIPE_MAX_BATCH"),
    Declared("device-eval-reference-declares-1e12", lambda c: (_huge_bundle(c), _device(c, "eval"))[1],
             "above edgepipe's limit of 4.00 GiB"),
    Declared("device-eval-reference-declares-1e12-system-python", lambda c: (
        _huge_bundle(c), _device(c, "eval", python=_system_python_with_numpy()))[1], "EDGEPIPE_MAX_ARRAY_MIB"),
    Declared("workstation-eval-reference-declares-1e12", lambda c: _edgepipe("eval", str(_huge_bundle(c))),
             "reference.npz (declaring outputs 1000000000000x10 float32"),
    Declared("device-eval-manifest-nests-too-deeply", lambda c: (
        deep_json_bundle_manifest(c / "run" / f"bundle-{TARGET}"), _device(c, "eval"))[1],
        f"bundle-{TARGET}/manifest.json nests too deeply to be an edgepipe file"),
    Declared("device-infer-input-declares-1e12", lambda c: (
        (c / "input.npy").write_bytes(npy_declaring((10**12, 1, 8, 8))),
        _device(c, "infer", str(c / "input.npy")))[1], "input.npy (declaring 1000000000000x1x8x8 float32)"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_declared_size_is_refused_in_one_line_fast_and_small(case: Declared, case_dir: Path):
    args = case.prepare(case_dir)
    before = snapshot(case_dir)
    code, stderr, seconds, peak = child_usage(args, cwd=REPO, env={**os.environ, "EDGEPIPE_NO_PROGRESS": "1"})
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (code, stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and case.expected in lines[0], stderr[-2000:]
    assert seconds < SECONDS, f"refused after {seconds:.2f} s"
    assert peak < PEAK_RSS, f"peak RSS {peak / 2**20:.0f} MiB"
    assert snapshot(case_dir) == before, "files changed on disk"
    print(f"{case.name}: {seconds:.2f} s, peak RSS {peak / 2**20:.0f} MiB")  # the numbers, with -s


def test_the_bounds_can_be_raised_deliberately_and_name_how(monkeypatch):
    from edgepipe import limits
    from edgepipe.errors import EdgepipeError

    with pytest.raises(EdgepipeError, match="set EDGEPIPE_MAX_BATCH=5000"):
        limits.check_batch(5000, "--batch")
    monkeypatch.setenv("EDGEPIPE_MAX_BATCH", "5000")
    assert limits.check_batch(5000, "--batch") == 5000
    with pytest.raises(EdgepipeError, match="EDGEPIPE_MAX_ARRAY_MIB=8193"):
        limits.check_allocation(8 * 2**30 + 1, "a test array", "use fewer")
