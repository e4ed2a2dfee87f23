"""Transfer learning on the generated photo folders: a backbone "pretrained" on twelve shape classes, saved as a
weights file, fine-tunes on four other shapes better than the same network from scratch (issue 14's floor).

No pretrained weights ship or download here, so the test makes its own, as a user's ImageNet file would be made:
train on many classes, save the state dict, start a different task from it with `model.weights`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SIZE = 32
PRETRAIN_IMAGES, PRETRAIN_EPOCHS = 2400, 10
FINETUNE = {"train": 100, "val": 100, "test": 400}  # few labelled images, a test split big enough to resolve 10 pt
FINETUNE_EPOCHS = 6
FLOOR_POINTS = 10.0


def _recipe(folder: Path, epochs: int, **sections) -> object:
    from edgepipe.recipe import Recipe

    model = {"name": "resnet", "params": {"width": 16}, **sections.pop("model", {})}
    return Recipe.model_validate({
        "name": "transfer", "model": model,
        "dataset": {"name": "imagefolder", "path": str(folder), "image_size": [SIZE, SIZE], "workers": 0,
                    "augment": {"horizontal_flip": 0.5}},
        "train": {"epochs": epochs, "batch_size": 32, "lr": 0.003, "optimizer": "adamw", "schedule": "onecycle",
                  **sections.pop("train", {})}})


@pytest.mark.integration
def test_fine_tuning_from_saved_weights_beats_training_from_scratch(tmp_path):
    from edgepipe.data.sample_folder import OTHER_SHAPES, PRETRAIN_SHAPES, SHAPES, write_sample_folder
    from edgepipe.stages.train import train

    sides = (SIZE, SIZE + SIZE // 2)
    pretrain_folder = write_sample_folder(tmp_path / "pretrain", images=PRETRAIN_IMAGES,
                                          classes=SHAPES + PRETRAIN_SHAPES, sizes=sides, seed=1)
    new_task = tmp_path / "new-task"
    for seed, (split, images) in enumerate(FINETUNE.items(), start=2):
        write_sample_folder(new_task / split, images=images, classes=OTHER_SHAPES, sizes=sides, seed=seed)
    pretrained = train(_recipe(pretrain_folder, PRETRAIN_EPOCHS), tmp_path / "pretrained")
    weights = pretrained / "model.pt"

    def test_accuracy(name: str, **sections) -> float:
        run = train(_recipe(new_task, FINETUNE_EPOCHS, **sections), tmp_path / name)
        manifest = json.loads((run / "manifest.json").read_text())
        return 100 * manifest["metrics"]["test"]

    scratch = test_accuracy("scratch")
    fine_tuned = test_accuracy("fine-tuned", model={"weights": str(weights)}, train={"backbone_lr": 0.0005})
    linear_probe = test_accuracy("frozen", model={"weights": str(weights)}, train={"freeze_backbone": True})
    manifest = json.loads((tmp_path / "fine-tuned" / "manifest.json").read_text())
    assert manifest["transfer"]["weights"] == str(weights) and manifest["transfer"]["loaded_tensors"] > 0
    assert fine_tuned >= scratch + FLOOR_POINTS, (scratch, fine_tuned, linear_probe)
    # The frozen features alone separate the new classes better than a network trained on them from scratch.
    assert linear_probe >= scratch + FLOOR_POINTS, (scratch, fine_tuned, linear_probe)
