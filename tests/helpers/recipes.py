"""Recipe and path helpers shared by tests (import as `from helpers.recipes import ...`)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


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
