"""Whole-pipeline runs on real data, made once per test session and shared read-only between tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.recipes import REPO

_RUNS: dict[str, Path] = {}


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """pipeline_run("mnist-lenet5") -> run dir of `edgepipe pipeline recipes/mnist-lenet5.yaml` (cached)."""
    from edgepipe.stages.pipeline import run_pipeline

    def make(recipe_name: str) -> Path:
        if recipe_name not in _RUNS:
            out = tmp_path_factory.mktemp(recipe_name) / "run"
            run_pipeline(REPO / "recipes" / f"{recipe_name}.yaml", out)
            _RUNS[recipe_name] = out
        return _RUNS[recipe_name]

    return make
