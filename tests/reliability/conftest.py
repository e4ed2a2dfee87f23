"""A pristine run made once by the real pipeline (tiny model, synthetic data), copied into every case.

Each reliability case gets its own copy under ``tmp_path/run`` with room around it for the user's own
files, so "nothing on disk was damaged" is checked over the whole case directory, not only the run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.runs import tiny_pipeline_recipe


@pytest.fixture(scope="session")
def pristine_run(tmp_path_factory) -> Path:
    from edgepipe.stages.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("pristine")
    run_pipeline(tiny_pipeline_recipe(root / "tiny.yaml"), root / "run")
    return root / "run"


@pytest.fixture
def case_dir(pristine_run: Path, tmp_path: Path) -> Path:
    """``tmp_path`` holding a fresh copy of the pristine run at ``run/``."""
    shutil.copytree(pristine_run, tmp_path / "run", symlinks=True)
    return tmp_path
