"""The task seam: each task's metric, its units, its drop and agreement, and what the device runtime shares."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from edgepipe.errors import EdgepipeError
from edgepipe.recipe import EvalConfig, Recipe
from edgepipe.tasks import TASKS, decide_budget, task_named


def test_the_recipe_offers_exactly_the_tasks_that_exist():
    assert set(typing.get_args(Recipe.model_fields["task"].annotation)) == set(TASKS)
    with pytest.raises(EdgepipeError, match="unknown task 'segmentation'"):
        task_named("segmentation")


def test_budgets_are_in_the_task_unit_and_the_old_key_still_reads():
    classification, reconstruction = task_named("classification"), task_named("reconstruction")
    assert decide_budget(classification, {}).max_drop == 0.5 and decide_budget(reconstruction).max_drop == 1.0
    assert decide_budget(reconstruction).unit == "dB"
    assert decide_budget(classification, {"eval": {"max_accuracy_drop": 2}}).max_drop == 2.0  # recipes before the seam
    assert EvalConfig.model_validate({"max_drop": 0.3}).max_drop == 0.3


def test_classification_scores_top1_and_its_drop_in_points():
    task = task_named("classification")
    labels = np.array([0, 1, 2, 0])
    logits = np.eye(3)[[0, 1, 1, 0]]  # 3 of 4 right
    assert task.score(logits, labels) == 0.75
    assert task.drop(1.0, 0.75) == pytest.approx(25.0)
    assert task.agreement(logits, np.eye(3)[[0, 1, 2, 0]]) == 0.75
    assert task.resolution(200) == 0.5
    metrics = task.metrics(logits, labels, ["a", "b", "c"])
    assert metrics["confusion"] == [[2, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert metrics["per_class"]["b"] == {"precision": 0.5, "recall": 1.0, "support": 1}
    assert "top5" not in metrics  # only with more than five classes


def test_top5_counts_a_label_among_the_five_best():
    task = task_named("classification")
    logits = np.tile(np.arange(10.0), (2, 1))  # class 9 best, then 8, 7, 6, 5
    assert task.metrics(logits, np.array([5, 4]), [str(i) for i in range(10)])["top5"] == 0.5


def test_psnr_is_on_the_raw_pixel_scale():
    """Inputs normalized as (x - mean) / std: a normalized error of 0.2 at std 0.5 is 0.1 raw, MSE 0.01, 20 dB."""
    task = task_named("reconstruction", {"std": [0.5], "mean": [0.3]})
    targets = np.zeros((4, 1, 8, 8), np.float32)
    outputs = targets + 0.2
    assert task.per_sample(outputs, targets) == pytest.approx([20.0] * 4)
    assert task.metrics(outputs, targets, [])["mse"] == pytest.approx(0.01)
    assert task.drop(20.0, 19.5) == pytest.approx(0.5)  # dB, not points
    assert task.agreement(outputs, outputs) == pytest.approx(100.0)  # identical to float precision
    rgb = task_named("reconstruction", {"std": [0.5, 1.0, 0.25]})  # one std per channel
    images = np.zeros((1, 3, 2, 2))
    error = images + np.array([0.2, 0.1, 0.4]).reshape(1, 3, 1, 1)  # raw 0.1 in every channel
    assert rgb.per_sample(error, images) == pytest.approx([20.0])


def test_an_autoencoder_that_answers_the_mean_image_is_flagged():
    task = task_named("reconstruction")
    rng = np.random.default_rng(0)
    images = rng.random((50, 1, 8, 8))
    assert "mean image" in task.degenerate(np.broadcast_to(images.mean(0), images.shape), images, [])
    assert task.degenerate(images + rng.normal(scale=0.01, size=images.shape), images, []) is None


def test_the_workstation_and_the_device_runtime_score_alike():
    """Both sides call the device runtime's per-sample functions: one implementation, not two that agree."""
    from edgepipe.device import scoring

    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(100, 4)), rng.integers(0, 4, 100)
    device = scoring.TASK_SCORES["classification"](None)
    assert task_named("classification").score(logits, labels) == device.score(logits, labels)
    images = rng.random((10, 1, 4, 4))
    device = scoring.TASK_SCORES["reconstruction"]([0.37])
    task = task_named("reconstruction", {"std": [0.37]})
    assert task.score(images * 0.9, images) == device.score(images * 0.9, images)
