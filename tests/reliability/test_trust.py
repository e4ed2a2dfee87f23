"""Code named by a run is imported only on the user's word: the recipe they run, or --trust-code."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.runs import tiny_pipeline_recipe
from typer.testing import CliRunner

from edgepipe.cli.main import app
from edgepipe.trust import TRUST_ALL_ENV, TRUSTED_CALLABLES_ENV

USER_MODEL = "helpers.user_models:tiny_cnn"


def test_a_user_model_is_rebuilt_from_its_run_only_when_the_user_trusts_it(tmp_path: Path):
    runner = CliRunner()
    recipe = tiny_pipeline_recipe(tmp_path / "user.yaml", model={"name": USER_MODEL, "params": {"width": 4}})
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(recipe), "--out", str(run)])
    assert trained.exit_code == 0, trained.output  # the recipe the user passed names it: imported

    refused = runner.invoke(app, ["export", str(run), "--exporter", "torchscript"])
    assert refused.exit_code == 2
    assert f"names code to import ('{USER_MODEL}')" in refused.stderr and "--trust-code" in refused.stderr
    assert not (run / "export").exists()

    trusted = runner.invoke(app, ["--trust-code", "export", str(run), "--exporter", "torchscript"])
    assert trusted.exit_code == 0, trusted.output
    assert (run / "export" / "model.onnx").is_file()
    # The trust ended with that command: it never carries over to the next one in the same process.
    assert TRUST_ALL_ENV not in os.environ and TRUSTED_CALLABLES_ENV not in os.environ
    again = runner.invoke(app, ["eval", str(run)])
    assert again.exit_code == 2 and "--trust-code" in again.stderr


def test_the_recipe_being_run_trusts_its_own_callable_through_every_stage(tmp_path: Path):
    recipe = tiny_pipeline_recipe(tmp_path / "user.yaml", model={"name": USER_MODEL, "params": {"width": 4}},
                                  prune={"ratio": 0.5, "finetune_epochs": 1})
    result = CliRunner().invoke(app, ["pipeline", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "bundle-jetson-orin-nano" / "manifest.json").is_file()
    assert TRUSTED_CALLABLES_ENV not in os.environ


def test_build_never_reads_a_calibration_cache_symlinked_out_of_the_run(case_dir: Path):
    import pytest

    from edgepipe.errors import EdgepipeError
    from edgepipe.trt.inputs import find_source_files

    (case_dir / "secret.txt").write_text("not a cache")
    cache = case_dir / "run" / "quantize" / "trt.calib.cache"
    cache.unlink()
    cache.symlink_to(case_dir / "secret.txt")
    with pytest.raises(EdgepipeError, match="trt.calib.cache' points outside"):
        find_source_files(case_dir / "run")
