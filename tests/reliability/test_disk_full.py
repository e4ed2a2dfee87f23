"""A full disk, for real: the run lives on a small tmpfs filled to a few KB, and each writing command must end in
one line naming the disk (and the room needed where it is known), exit 2, the previous artifacts byte for byte
as they were, and no temporary left anywhere on that filesystem.

"Nearly full" is two sizes: nothing free (the first write fails with ENOSPC) and 40 KB free, where onnxruntime's
quantizer gets its shape-inferred temporary model cut short by onnx's C++ writer and reads it back as a protobuf
DecodeError (the issue's traceback). Skipped, with the reason, where a tmpfs cannot be mounted (not root).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.hostile import fill, small_filesystem
from helpers.runs import TARGET, snapshot
from typer.testing import CliRunner

from edgepipe.cli.main import app

NOTHING, A_LITTLE = 0, 40 << 10


def _calibration_folder(root: Path) -> Path:
    from PIL import Image

    folder = root / "calib"
    folder.mkdir()
    for index in range(8):  # 12x12: not the model's 8x8 input, brought to it by the eval view
        Image.fromarray(np.full((12, 12), 30 * index, np.uint8)).save(folder / f"{index}.png")
    return folder


CASES = {  # name: (free bytes left, command given the run and the calibration folder)
    "quantize-calibration-folder-nothing-free": (NOTHING, lambda run, calib: ["quantize", str(run), "--calib",
                                                                              str(calib)]),
    "quantize-calibration-folder-40k-free": (A_LITTLE, lambda run, calib: ["quantize", str(run), "--calib",
                                                                           str(calib)]),
    "quantize-recipe-calibration-40k-free": (A_LITTLE, lambda run, calib: ["quantize", str(run)]),
    "export-nothing-free": (NOTHING, lambda run, calib: ["export", str(run)]),
    "bundle-nothing-free": (NOTHING, lambda run, calib: ["bundle", str(run), "--target", TARGET, "--out",
                                                         str(run / f"bundle-{TARGET}")]),
    "bundle-40k-free": (A_LITTLE, lambda run, calib: ["bundle", str(run), "--target", TARGET, "--out",
                                                      str(run / f"bundle-{TARGET}")]),
    "eval-report-nothing-free": (NOTHING, lambda run, calib: ["eval", str(run)]),
    "bench-report-nothing-free": (NOTHING, lambda run, calib: ["bench", str(run), "--no-memory", "--no-steady",
                                                               "--iters", "1", "--repeats", "1", "--seconds", "0.01",
                                                               "--batch", "1"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_full_disk_is_one_line_and_leaves_the_run_as_it_was(name: str, pristine_run: Path, tmp_path: Path):
    free, command = CASES[name]
    calib = _calibration_folder(tmp_path)  # on the roomy disk: only the run's disk is full
    with small_filesystem(tmp_path / "small", "8m") as disk:
        run = disk / "run"
        shutil.copytree(pristine_run, run, symlinks=True)
        fill(disk, free)
        before = snapshot(run)
        result = CliRunner().invoke(app, command(run, calib))
        lines = [line for line in result.stderr.splitlines() if line.strip() and line.startswith("error")]
        assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
        assert len(lines) == 1 and lines[0].startswith(f"error: no space left on {disk}"), result.stderr
        assert "Traceback" not in result.output and "DecodeError" not in result.output
        if name.startswith(("quantize", "bundle-40k", "eval", "bench")):
            assert "which needs about" in lines[0], lines[0]  # the room it needed, where it can be known
        assert snapshot(run) == before, "the previous artifacts changed"
        leftovers = [str(p.relative_to(disk)) for p in disk.rglob("*") if ".tmp-" in p.name or ".old-" in p.name
                     or p.name.startswith(("calib-", "ort.quant", "sqnr-"))]
        assert leftovers == [], leftovers
