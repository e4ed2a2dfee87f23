"""YOLO output layouts decoded into edgepipe's detection contract: hand-made heads, and the decode appended to a
graph that plain torch.onnx.export wrote, run on onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgepipe.errors import EdgepipeError
from edgepipe.models.yolo import YoloDecode, raw_shape_problem

# Four anchors, two classes (centre x, centre y, w, h): the second overlaps the first (IoU 0.78) in the same class
# (suppressed at the default 0.7),
# the third is the same box in the other class (kept: NMS is per class), the fourth is under the score threshold.
ANCHORS = np.array([[10, 10, 4, 4], [10.5, 10, 4, 4], [10.5, 10, 4, 4], [50, 50, 10, 10]], np.float32)
CLASS_SCORES = np.array([[0.9, 0.1], [0.8, 0.0], [0.0, 0.7], [0.0005, 0.0]], np.float32)


def decoded(layout: str, raw: np.ndarray, **kwargs) -> dict[str, np.ndarray]:
    decode = YoloDecode(layout, 2, (64, 64), max_detections=5, **kwargs)
    return {name: value.numpy() for name, value in decode(torch.from_numpy(raw)).items()}


def check_expected(out: dict[str, np.ndarray]) -> None:
    assert out["num_detections"].tolist() == [2]
    np.testing.assert_allclose(out["boxes"][0, :2], [[8, 8, 12, 12], [8.5, 8, 12.5, 12]])
    np.testing.assert_allclose(out["scores"][0], [0.9, 0.7, 0, 0], atol=1e-6)  # K = min(5, 4 anchors)
    assert out["classes"][0].tolist() == [0, 1, -1, -1] and out["classes"].dtype == np.int32


def test_yolov8_layout():
    raw = np.concatenate([ANCHORS, CLASS_SCORES], axis=1).T[None]  # [1, 4 + C, A]
    check_expected(decoded("yolov8", raw))


def test_yolov5_layout_scores_objectness_times_class():
    objectness = np.array([[1.0], [1.0], [1.0], [1.0]], np.float32)
    raw = np.concatenate([ANCHORS, objectness, CLASS_SCORES], axis=1)[None]  # [1, A, 5 + C]
    check_expected(decoded("yolov5", raw))
    raw[0, 0, 4] = 0.5  # half the objectness: 0.45, so the overlapping 0.8 box of its class now suppresses it
    out = decoded("yolov5", raw)
    np.testing.assert_allclose(out["scores"][0, :3], [0.8, 0.7, 0.0], atol=1e-6)
    np.testing.assert_allclose(out["boxes"][0, 0], [8.5, 8, 12.5, 12])


def test_end_to_end_layout_is_sorted_and_thresholded():
    raw = np.array([[[1, 2, 3, 4, 0.3, 1], [5, 6, 70, 8, 0.9, 0], [0, 0, 0, 0, 0.0, 0]]], np.float32)
    out = decoded("yolo-end2end", raw)
    assert out["num_detections"].tolist() == [2] and out["classes"][0].tolist() == [0, 1, -1]
    np.testing.assert_allclose(out["boxes"][0, 0], [5, 6, 64, 8])  # clipped to the 64-px input


def test_shape_problems_name_expected_and_found():
    assert raw_shape_problem("yolov8", (1, 84, 8400), 80) is None
    assert raw_shape_problem("yolov8", ("batch", 84, "anchors"), 80) is None
    message = raw_shape_problem("yolov8", (1, 14, 144), 80)
    assert "[N, 4 + 80 classes, anchors]" in message and "[1, 14, 144]" in message
    assert "axes" in raw_shape_problem("yolov5", (1, 100), 3)
    with pytest.raises(EdgepipeError, match="known layouts"):
        YoloDecode("yolox", 2, (64, 64))


class TinyYoloV8(nn.Module):
    """A YOLOv8-style head (decoded xywh in pixels + sigmoid class scores, [N, 4 + C, A]) on a 3-conv body."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.SiLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.SiLU(),
                                  nn.Conv2d(8, 8, 3, 2, 1), nn.SiLU())
        self.box, self.cls = nn.Conv2d(8, 4, 1), nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        features = self.body(x)
        n, _, h, w = features.shape
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        b = self.box(features)
        xywh = torch.stack([(xs + torch.sigmoid(b[:, 0])) * 8, (ys + torch.sigmoid(b[:, 1])) * 8,
                            torch.exp(b[:, 2].clamp(max=3)) * 8, torch.exp(b[:, 3].clamp(max=3)) * 8], 1)
        return torch.cat([xywh.reshape(n, 4, h * w), torch.sigmoid(self.cls(features)).reshape(n, -1, h * w)], 1)


def test_decode_appended_to_a_plain_export_runs_on_onnxruntime_as_in_torch(tmp_path: Path):
    import onnxruntime as ort

    from edgepipe.foreign.decode import append_decode

    torch.manual_seed(0)
    model = TinyYoloV8().eval()
    path = tmp_path / "yolo.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 64, 64),), str(path), input_names=["images"],
                      output_names=["output0"], dynamic_axes={"images": {0: "n"}, "output0": {0: "n"}},
                      opset_version=13, dynamo=False)  # what users' scripts write: opset < 18, TorchScript
    merged = append_decode(path, YoloDecode("yolov8", 3, (64, 64), nms_iou=0.5))
    assert [output.name for output in merged.graph.output] == ["boxes", "scores", "classes", "num_detections"]
    session = ort.InferenceSession(merged.SerializeToString(), providers=["CPUExecutionProvider"])
    images = torch.rand(3, 3, 64, 64)
    got = dict(zip(["boxes", "scores", "classes", "num_detections"], session.run(None, {"images": images.numpy()}),
                   strict=True))
    with torch.inference_mode():
        expected = YoloDecode("yolov8", 3, (64, 64), nms_iou=0.5)(model(images))
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value.numpy(), atol=1e-4, err_msg=name)
    assert got["num_detections"].min() > 0

    with pytest.raises(EdgepipeError, match=r"not yolov5: expected \[N, anchors, 5 \+ 3 classes\]"):
        append_decode(path, YoloDecode("yolov5", 3, (64, 64)))
    with pytest.raises(EdgepipeError, match="no output 'out'"):
        append_decode(path, YoloDecode("yolov8", 3, (64, 64)), raw_output="out")
