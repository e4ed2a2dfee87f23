"""eval: every drop with its uncertainty, agreement with the original and with the artifact's own parent."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgepipe.stages.evaluate import drop_interval, evaluate


def test_rows_carry_the_parent_agreement_and_the_drop_interval(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    report = evaluate(run)
    rows = {row["name"]: row for row in report["artifacts"]}
    exported = next(row for row in rows.values() if row["format"] == "onnx")
    assert exported["parent"] == "original"  # the ONNX is compared with the PyTorch model it was exported from
    assert 0.99 <= exported["agreement_with_parent"] <= 1.0
    assert exported["drop_ci95_pts"] >= 0
    assert report["samples"] > 0 and report["resolution_pts"] == pytest.approx(100 / report["samples"])
    assert report["budget_resolvable"] == (report["max_accuracy_drop"] >= report["resolution_pts"])


def test_the_drop_interval_is_paired():
    rng = np.random.default_rng(0)
    right = rng.random(1000) < 0.9
    assert drop_interval(right, right) == 0.0  # the same answers: no uncertainty about the difference
    flipped = right.copy()
    flipped[:20] = ~flipped[:20]  # 20 of 1000 answers changed
    half_width = drop_interval(right, flipped)
    assert 0.5 < half_width < 1.5  # ~1.96 * sqrt(0.02 / 1000) * 100 = 0.88 pt
