"""Shared fixtures: tiny recipes on synthetic data (fast), and CLI helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("EDGEPIPE_NO_PROGRESS", "1")  # keep test logs readable

REPO = Path(__file__).resolve().parents[1]


def write_recipe(path: Path, **sections) -> Path:
    """A small recipe: synthetic 12x12 images, an MLP, 3 epochs (about a second on a CPU)."""
    recipe = {
        "name": "tiny",
        "model": {"name": "mlp", "params": {"hidden": [32]}},
        "dataset": {"name": "synthetic", "samples": 400, "num_classes": 4, "shape": [1, 12, 12]},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "seed": 0},
        "export": {"exporter": "torchscript"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    path.write_text(yaml.safe_dump(recipe))
    return path


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
