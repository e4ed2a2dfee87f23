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


@pytest.fixture(scope="session")
def tiny_detector_run(tmp_path_factory) -> Path:
    """A CenterNet trained for one epoch on 120 canvases, exported (train/ and export/ in one run directory): a real
    detector graph for infer, the bundle and the DeepStream parser. Shared read-only (copy it before writing)."""
    from edgepipe.recipe import Recipe
    from edgepipe.stages.export import export
    from edgepipe.stages.train import train

    root = tmp_path_factory.mktemp("detector")
    recipe = Recipe.model_validate({
        "name": "tiny-det", "task": "detection",
        "model": {"name": "centernet", "params": {"width": 8, "max_detections": 20}},
        "dataset": {"name": "mnist-canvas", "canvases": 120, "image_size": [64, 64]},
        "train": {"epochs": 1, "batch_size": 32}})
    train(recipe, root / "train")
    export(root / "train", root / "export")
    return root


@pytest.fixture(scope="session")
def tiny_detection_bundle(tiny_detector_run, tmp_path_factory) -> Path:
    """A deploy bundle of the tiny detector (8 samples) for jetson-orin-nano. Shared read-only."""
    import shutil

    from edgepipe.stages.bundle import make_bundle

    run = tmp_path_factory.mktemp("detector-bundle") / "run"
    shutil.copytree(tiny_detector_run, run)
    return make_bundle(run, "jetson-orin-nano", run.parent / "bundle", samples=8)


@pytest.fixture(scope="session")
def tiny_classification_bundle(tiny_run, tmp_path_factory) -> Path:
    """A deploy bundle of the tiny classifier (lenet5 logits, 4 classes; 64 samples) for jetson-orin-nano. Shared
    read-only."""
    import shutil

    from edgepipe.stages.bundle import make_bundle

    run = tmp_path_factory.mktemp("classifier-bundle") / "run"
    shutil.copytree(tiny_run, run)
    return make_bundle(run, "jetson-orin-nano", run.parent / "bundle", samples=64)


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch) -> None:
    """Each test its own EDGEPIPE_CACHE_DIR (bench's remembered probe, quantize's speed decisions): one test's
    measured decision never answers another's."""
    monkeypatch.setenv("EDGEPIPE_CACHE_DIR", str(tmp_path / "edgepipe-cache"))


@pytest.fixture
def quick_prune_latency(monkeypatch):
    """The prune stage times both models in one short round (tests check what it records, not the speed)."""
    import edgepipe.stages.prune as prune_stage

    monkeypatch.setattr(prune_stage, "LATENCY_ROUNDS", 1)
    monkeypatch.setattr(prune_stage, "LATENCY_SECONDS", 0.01)
