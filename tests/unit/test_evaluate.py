"""eval: every drop with its uncertainty, agreement with the original and with the artifact's own parent."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgepipe.stages.evaluate import evaluate
from edgepipe.tasks import task_named


def test_rows_carry_the_parent_agreement_and_the_drop_interval(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    report = evaluate(run)
    rows = {row["name"]: row for row in report["artifacts"]}
    exported = next(row for row in rows.values() if row["format"] == "onnx")
    assert exported["parent"] == "original"  # the ONNX is compared with the PyTorch model it was exported from
    assert 0.99 <= exported["agreement_with_parent"] <= 1.0
    assert exported["drop_ci95"] >= 0
    assert report["task"]["name"] == "classification" and report["task"]["unit"] == "pts"
    assert report["samples"] > 0 and report["resolution"] == pytest.approx(100 / report["samples"])
    assert report["budget_resolvable"] == (report["max_drop"] >= report["resolution"])
    metrics = rows["original"]["metrics"]  # what the field reports beside top-1, in report.json
    assert metrics["accuracy"] == rows["original"]["score"] and 0.5 <= metrics["auc"] <= 1.0
    classes = len(report["dataset"]["labels"])
    assert len(metrics["confusion"]) == classes and sum(map(sum, metrics["confusion"])) == report["samples"]
    assert set(metrics["per_class"]) == set(report["dataset"]["labels"])


def test_the_drop_interval_is_paired():
    task = task_named("classification")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    right = rng.random(1000) < 0.9
    logits = np.eye(2)[np.where(right, labels, 1 - labels)]
    assert task.drop_interval(logits, logits, labels) == 0.0  # the same answers: no uncertainty about the difference
    flipped = logits.copy()
    flipped[:20] = flipped[:20, ::-1]  # 20 of 1000 answers changed
    half_width = task.drop_interval(logits, flipped, labels)
    assert 0.5 < half_width < 1.5  # ~1.96 * sqrt(0.02 / 1000) * 100 = 0.88 pt
