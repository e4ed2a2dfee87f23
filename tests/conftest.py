"""Shared fixtures: tiny recipes on synthetic data (fast), and CLI helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("EDGEPIPE_NO_PROGRESS", "1")  # keep test logs readable
# Measured decisions (edgepipe.cache) never go to ~/.cache from tests, not even from module-scoped fixtures
# that run before the per-test directory below is set.
os.environ["EDGEPIPE_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgepipe-test-cache-")

from helpers.recipes import REPO, write_recipe  # noqa: F401  (re-exported for fixtures)


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "tiny.yaml")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A trained and exported tiny run, shared read-only by tests (copy it before writing)."""
    from edgepipe.recipe import load_recipe
    from edgepipe.stages.export import export
    from edgepipe.stages.train import train

    root = tmp_path_factory.mktemp("tiny-run")
    recipe = load_recipe(write_recipe(root / "tiny.yaml", model={"name": "lenet5", "params": {}}))
    run = root / "run"
    train(recipe, run / "train")
    export(run / "train", run / "export", recipe.export)
    return run


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch) -> None:
    """Each test its own EDGEPIPE_CACHE_DIR (bench's remembered probe, quantize's speed decisions): one test's
    measured decision never answers another's."""
    monkeypatch.setenv("EDGEPIPE_CACHE_DIR", str(tmp_path / "edgepipe-cache"))
