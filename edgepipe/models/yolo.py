"""Decoding the raw outputs of YOLO-family detectors trained elsewhere into edgepipe's detection contract.

An imported detector's graph ends in one of the layouts people have, and gets this decode appended to its ONNX
graph (``edgepipe.foreign.decode``), so every later stage, TensorRT, Triton and DeepStream see the same fixed-shape
outputs as a detector edgepipe trained (models/detector.py):

    boxes [N, K, 4] (x1, y1, x2, y2 in input pixels) · scores [N, K] · classes [N, K] int32 · num_detections [N] int32

Layouts (ultralytics' exporter and its ``non_max_suppression`` are the reference, ultralytics/utils/nms.py):
- ``yolov5``: ``[N, A, 5 + C]``: centre x, centre y, width, height, objectness, C class probabilities (sigmoid
  already applied by the export); a box's score is objectness x its best class probability.
- ``yolov8`` (YOLOv8, YOLO11): ``[N, 4 + C, A]``: centre x, centre y, width, height, C class probabilities, no
  objectness.
- ``yolo-end2end`` (YOLOv10, YOLO26, exports with NMS inside): ``[N, K, 6]``: x1, y1, x2, y2, score, class.

Decode: the best class per anchor, the ``PRE_NMS_TOP`` highest-scoring anchors (TopK), class-aware NMS as ONNX
NonMaxSuppression (models/nms.py: native batch and class axes, constants TensorRT 8.2+ parses), then the top K.
Why in the graph and not in numpy after it: TensorRT, Triton and DeepStream then serve the detections themselves,
the quantize stage keeps the decode in float by the same rule as for edgepipe's own detectors (quant/tracks.py),
and the device runtime needs no decoder of its own.
"""

from __future__ import annotations

import torch
from torch import nn

from edgepipe.errors import EdgepipeError

LAYOUTS = ("yolov5", "yolov8", "yolo-end2end")
PRE_NMS_TOP = 1000  # candidates per image into NMS: INMSLayer's TopK limit is 2000 on SM 5.3/6.2 (TensorRT docs)


def raw_shape_problem(layout: str, shape: tuple, num_classes: int) -> str | None:
    """Why a raw output of ``shape`` is not ``layout`` for ``num_classes`` classes (None when it is).

    Dimensions that are not numbers (dynamic axes) are taken on trust; the batch axis is never checked."""
    def fixed(value) -> int | None:
        return value if isinstance(value, int) and value > 0 else None

    if len(shape) != 3:
        return f"a {layout} output has 3 axes, this one has {len(shape)} ({_shape_text(shape)})"
    expected = {"yolov5": (None, None, 5 + num_classes), "yolov8": (None, 4 + num_classes, None),
                "yolo-end2end": (None, None, 6)}[layout]
    for axis, (want, have) in enumerate(zip(expected, shape, strict=True)):
        if want is not None and fixed(have) is not None and have != want:
            layout_text = {"yolov5": f"[N, anchors, 5 + {num_classes} classes]",
                           "yolov8": f"[N, 4 + {num_classes} classes, anchors]",
                           "yolo-end2end": "[N, detections, 6]"}[layout]
            return (f"expected {layout_text} = {_shape_text(tuple(w or '?' for w in expected))}, found "
                    f"{_shape_text(shape)} (axis {axis}: {have}, not {want})")
    return None


def _shape_text(shape: tuple) -> str:
    return "[" + ", ".join(str(side) for side in shape) + "]"


class YoloDecode(nn.Module):
    """One raw YOLO output tensor -> edgepipe's four fixed-shape detection outputs."""

    def __init__(self, layout: str, num_classes: int, image_size: tuple[int, int], max_detections: int = 100,
                 score_threshold: float = 0.001, nms_iou: float = 0.7) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise EdgepipeError(f"output layout {layout!r}: known layouts are {', '.join(LAYOUTS)}")
        if not 0.0 < nms_iou <= 1.0:
            raise EdgepipeError(f"nms_iou {nms_iou}: an IoU threshold in (0, 1]")
        self.layout, self.num_classes = layout, int(num_classes)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.max_detections, self.score_threshold, self.nms_iou = int(max_detections), score_threshold, nms_iou

    @property
    def onnx_translations(self) -> dict:
        if self.layout == "yolo-end2end":
            return {}
        from edgepipe.models.nms import ONNX_TRANSLATIONS

        return ONNX_TRANSLATIONS

    def candidates(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Corner boxes [N, A, 4], best-class scores [N, A] and classes [N, A] of every anchor."""
        if self.layout == "yolov8":
            raw = raw.transpose(1, 2)  # [N, A, 4 + C]
            class_scores = raw[..., 4:4 + self.num_classes]
        else:  # yolov5: objectness x class probability, as ultralytics' YOLOv5 NMS scores a box
            class_scores = raw[..., 5:5 + self.num_classes] * raw[..., 4:5]
        scores, classes = class_scores.max(dim=-1)
        centre, half = raw[..., 0:2], raw[..., 2:4] / 2
        return torch.cat([centre - half, centre + half], dim=-1), scores, classes

    def forward(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        height, width = self.image_size
        limits = torch.tensor([width, height, width, height], dtype=raw.dtype, device=raw.device)
        if self.layout == "yolo-end2end":
            k = min(self.max_detections, int(raw.shape[1]))
            scores, order = raw[..., 4].topk(k, dim=1)  # most end-to-end heads sort already; not all do
            boxes = raw[..., 0:4].gather(1, order.unsqueeze(-1).expand(-1, k, 4))
            classes = raw[..., 5].gather(1, order).round().to(torch.int64)
        else:
            dense_boxes, dense_scores, dense_classes = self.candidates(raw)
            anchors = int(dense_scores.shape[1])
            pre = min(PRE_NMS_TOP, anchors)
            scores, index = dense_scores.topk(pre, dim=1)
            boxes = dense_boxes.gather(1, index.unsqueeze(-1).expand(-1, pre, 4))
            classes = dense_classes.gather(1, index)
            from edgepipe.models.nms import nms_keep

            keep = nms_keep(boxes, scores, classes, float(self.nms_iou), self.num_classes, pre)
            k = min(self.max_detections, pre)
            scores, order = (scores * keep).topk(k, dim=1)
            boxes = boxes.gather(1, order.unsqueeze(-1).expand(-1, k, 4))
            classes = classes.gather(1, order)
        boxes = torch.minimum(boxes.clamp(min=0), limits)
        kept = scores >= self.score_threshold
        scores = torch.where(kept, scores, torch.zeros_like(scores))
        classes = torch.where(kept, classes, torch.full_like(classes, -1)).to(torch.int32)
        count = kept.to(scores.dtype).sum(dim=1).to(torch.int32)  # float sum: TensorRT 8 reduces no int32
        return {"boxes": boxes, "scores": scores, "classes": classes, "num_detections": count}
