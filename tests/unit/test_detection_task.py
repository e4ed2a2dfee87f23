"""The detection task: mAP in points, box agreement, order-free parity, what infer says and draws, and the
eval view inverted so boxes land on the user's own pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgepipe.errors import EdgepipeError
from edgepipe.tasks import task_named

LABELS = [str(i) for i in range(3)]


def _targets():
    return np.array([[[10, 10, 30, 40, 0], [50, 50, 80, 90, 2]],
                     [[5, 5, 25, 25, 1], [0, 0, 0, 0, -1]]], np.float32)


def _detections(shift=0.0, score=0.9):
    rows = np.full((2, 4, 6), 0.0, np.float32)
    rows[..., 5] = -1
    rows[0, 0] = [10 + shift, 10, 30 + shift, 40, score, 0]
    rows[0, 1] = [50, 50, 80, 90, score - 0.1, 2]
    rows[1, 0] = [5, 5, 25, 25, score, 1]
    return rows


def test_map_is_the_metric_and_drops_are_in_points():
    task = task_named("detection", {"size": [96, 96]})
    assert task.score(_detections(), _targets()) == pytest.approx(1.0)
    moved = task.score(_detections(shift=15), _targets())  # one of three objects missed at IoU 0.5
    assert moved == pytest.approx(2 / 3, abs=1e-3)
    assert task.drop(1.0, moved) == pytest.approx(100 / 3, abs=0.1)
    metrics = task.metrics(_detections(), _targets(), LABELS)
    assert metrics["map50"] == pytest.approx(1.0) and metrics["coco"]["map50"] == pytest.approx(1.0)
    assert set(metrics["per_class_ap50"]) == set(LABELS)


def test_box_agreement_and_its_interval():
    task = task_named("detection", {"size": [96, 96]})
    assert task.agreement(_detections(), _detections()) == 1.0
    assert task.agreement(_detections(), _detections(shift=15)) == pytest.approx(2 / 3)
    assert task.drop_interval(_detections(), _detections(), _targets()) == 0.0


def test_parity_matches_detections_row_to_row():
    task = task_named("detection", {"size": [96, 96]})
    swapped = _detections()[:, [1, 0, 2, 3]]
    reference, candidate = task.parity_pair(_detections(), swapped)
    assert reference.shape == (3, 5) and np.array_equal(reference, candidate)  # order does not matter
    lost = _detections()
    lost[1, 0, 5] = -1  # the second image's only box is gone
    reference, candidate = task.parity_pair(_detections(), lost)
    assert np.abs(reference - candidate).max() >= 0.9  # a lost box is a large difference, not a reordering


def test_detection_needs_box_targets_and_an_image_size():
    task = task_named("detection", {"size": [96, 96]})

    class Labels:
        y = np.array([0, 1, 2])

    with pytest.raises(EdgepipeError, match="box targets"):
        task.targets(Labels())
    with pytest.raises(EdgepipeError, match="image size"):
        task_named("detection").loss(None)


def test_a_detector_that_finds_nothing_is_degenerate():
    task = task_named("detection", {"size": [96, 96]})
    nothing = np.zeros((2, 4, 6), np.float32)
    nothing[..., 5] = -1
    assert "finds next to nothing" in task.degenerate(nothing, _targets(), LABELS)
    assert task.degenerate(_detections(), _targets(), LABELS) is None


def test_predictions_list_confident_boxes_best_first():
    task = task_named("detection", {"size": [96, 96]})
    rows = _detections()
    rows[0, 2] = [1, 1, 5, 5, 0.1, 1]  # below the display threshold
    said = task.predictions(rows, None, LABELS, top_k=3)
    assert [d["label"] for d in said[0]["detections"]] == ["0", "2"]
    assert said[0]["detections"][0]["box"] == [10.0, 10.0, 30.0, 40.0]
    assert len(said[1]["detections"]) == 1


@pytest.mark.parametrize("source, preprocessing", [
    ((192, 96), {"size": [48, 96]}),  # a straight resize, each axis by its own factor
    ((300, 200), {"size": [96, 96], "resize": 128}),  # shorter side to 128, then the centre 96 x 96
    ((200, 300), {"size": [96, 96], "resize": 128}),  # portrait
])
def test_boxes_go_back_onto_the_source_image(source, preprocessing):
    """A box drawn on the source, pushed through the eval view, lands where the view put its pixels."""
    from PIL import Image

    from edgepipe.data.images import eval_view

    width, height = source
    picture = np.zeros((height, width), np.uint8)
    picture[height // 2 - 20:height // 2 + 20, width // 2 - 30:width // 2 + 30] = 255  # a bright central block
    view = eval_view(preprocessing)
    seen = view(Image.fromarray(picture))[0]
    ys, xs = np.nonzero(seen > 127)
    model_box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
    back = view.to_source(model_box, source)[0]
    want = [width // 2 - 30, height // 2 - 20, width // 2 + 30, height // 2 + 20]
    assert back == pytest.approx(want, abs=3.5)


def test_infer_draws_boxes_and_refuses_to_draw_for_a_classifier(tmp_path):
    from PIL import Image

    from edgepipe.infer import draw_detections

    image = tmp_path / "canvas.png"
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(image)
    out = draw_detections(image, [{"class": 1, "label": "1", "score": 0.8, "box": [10, 10, 40, 50]}],
                          tmp_path / "drawn", {"size": [96, 96]})
    drawn = np.asarray(Image.open(out).convert("RGB"))
    assert drawn.shape[0] >= 256  # small inputs are enlarged so the caption is legible
    assert drawn.reshape(-1, 3).max(0).sum() > 0  # something was drawn on the black canvas


def test_infer_cli_on_a_trained_detector(tmp_path, tiny_detector_run):
    """`edgepipe infer RUN IMAGES --draw DIR --json`: boxes per image, and one PNG each."""
    from PIL import Image

    from edgepipe.cli.main import app

    images = tmp_path / "images"
    images.mkdir()
    for index in range(2):
        Image.fromarray((np.random.RandomState(index).rand(96, 96) * 40).astype(np.uint8)).save(
            images / f"img{index}.png")
    result = CliRunner().invoke(app, ["infer", str(tiny_detector_run), str(images), "--draw",
                                      str(tmp_path / "drawn"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["task"]["name"] == "detection"
    assert [Path(p["drawn"]).name for p in report["predictions"]] == ["img0.png", "img1.png"]
    assert all((tmp_path / "drawn" / f"img{i}.png").is_file() for i in range(2))
