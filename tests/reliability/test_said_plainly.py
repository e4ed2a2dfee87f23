"""What a new user met and was not told plainly: a broken OpenVINO called "not installed", a dead model that eval
passed without a word, torch-pruning's cls_token/pos_embed warning on reloading a pruned ViT, a COCO file nested
too deeply that the error did not name."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import pytest
from helpers.hostile import kill_the_model
from helpers.recipes import REPO
from helpers.runs import snapshot
from typer.testing import CliRunner

from edgepipe.cli.main import app

CLI = "import sys; from edgepipe.cli.main import main; sys.argv = ['edgepipe', *sys.argv[1:]]; main()"
BROKEN = "libopenvino.so.2541: cannot open shared object file: No such file or directory"


@pytest.fixture
def broken_openvino(tmp_path: Path) -> dict[str, str]:
    """An environment whose `openvino` package raises on import, as one with a missing .so does."""
    package = tmp_path / "site" / "openvino"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"raise ImportError({BROKEN!r})\n")
    return {**os.environ, "EDGEPIPE_NO_PROGRESS": "1",
            "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}


def test_a_broken_openvino_is_reported_broken_with_its_error_not_missing(case_dir: Path, broken_openvino):
    import subprocess

    run = case_dir / "run"
    asked = subprocess.run([sys.executable, "-c", CLI, "bench", str(run), "--backend", "openvino", "--no-memory"],
                           cwd=REPO, env=broken_openvino, capture_output=True, text=True, timeout=300)
    lines = [line for line in asked.stderr.splitlines() if line.strip()]
    assert asked.returncode == 2 and len(lines) == 1, asked.stderr
    assert "OpenVINO is installed but broken (ImportError: " + BROKEN in lines[0] and "not installed" not in lines[0]

    before = snapshot(run)  # not asked for: bench runs on onnxruntime and its note says why OpenVINO did not
    default = subprocess.run([sys.executable, "-c", CLI, "bench", str(run), "--no-memory", "--no-steady", "--iters",
                              "1", "--repeats", "1", "--seconds", "0.01", "--batch", "1", "--backend", "onnxruntime"],
                             cwd=REPO, env=broken_openvino, capture_output=True, text=True, timeout=300)
    assert default.returncode == 0, default.stderr
    notes = json.loads((run / "report.json").read_text())["bench"]["notes"]
    assert any(f"OpenVINO is installed but broken (ImportError: {BROKEN})" in note for note in notes), notes
    assert snapshot(run) != before  # (the report was rewritten: the command ran)


def test_eval_flags_a_dead_model_and_fails_instead_of_passing(case_dir: Path):
    run = case_dir / "run"
    kill_the_model(run)
    result = CliRunner().invoke(app, ["eval", str(run), "--json"])
    assert result.exit_code == 1, result.output
    assert "degenerate (outputs independent of the input): original" in result.stderr
    assert "the model's outputs are the same for all" in result.stderr
    report = json.loads((run / "report.json").read_text())
    assert report["passed"] is False and "original" in report["failed"]
    assert report["artifacts"][0]["degenerate"].startswith("the model's outputs are the same for all")


def test_reloading_a_pruned_vit_does_not_warn_about_cls_token_or_pos_embed():
    import torch_pruning as tp

    from edgepipe.models import build_model
    from edgepipe.pruning.replay import example_input, replay_history

    spec = {"name": "timm:vit_tiny_patch16_224", "params": {"depth": 1}, "input_shape": [3, 32, 32],
            "num_classes": 3}
    with warnings.catch_warnings(record=True) as raw:  # the warning is real: torch-pruning gives it on a ViT
        warnings.simplefilter("always")
        tp.DependencyGraph().build_dependency(build_model(spec).eval(), example_inputs=example_input([3, 32, 32]))
    assert any("Unwrapped parameters detected" in str(w.message) for w in raw)
    with warnings.catch_warnings(record=True) as replayed:
        warnings.simplefilter("always")
        replay_history(build_model(spec), [3, 32, 32], [])
    assert not [w for w in replayed if "Unwrapped parameters" in str(w.message)], [str(w.message) for w in replayed]


def test_a_coco_file_nested_too_deeply_is_named(tmp_path: Path):
    from edgepipe.data import load_dataset
    from edgepipe.errors import EdgepipeError
    from edgepipe.recipe import DatasetConfig

    (tmp_path / "instances.json").write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(EdgepipeError, match=r"instances.json: nests too deeply to be COCO annotations"):
        load_dataset(DatasetConfig(name="coco", path=str(tmp_path), image_size=(32, 32), workers=0))
