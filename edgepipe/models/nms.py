"""Class-aware NMS inside the exported graph, as ONNX NonMaxSuppression (TensorRT's INMSLayer, no plugin), with the
detector's outputs still fixed-shape.

A centre-point detector needs no NMS (its 3x3 peak test is one); a detector whose neighbouring cells fire for one
object does. ``nms_keep`` marks which of the decode's K candidates survive; the decode zeroes the rest and re-sorts,
so ``boxes [N, K, 4]`` etc. keep their shapes (Triton batches them; nothing downstream sees a data-dependent shape).

The graph emits NonMaxSuppression with its native batch and class axes: boxes ``[N, K, 4]`` (corners), scores
``[N, C, K]``. Per image and class, as INMSLayer runs it, so each batch item holds K boxes, far under the layer's
TopK limit (2000 on SM 5.3/6.2, 5000 elsewhere; TensorRT's NMS operator docs). A flattened batch through
``torchvision.ops.nms`` (its ONNX translation) would put N*K boxes in one item and an INT64_MAX
``max_output_boxes_per_class`` where TensorRT takes an int32 (INMSLayer docs, 8.6). ``max_output_boxes_per_class``,
``iou_threshold`` and ``score_threshold`` are constants, as TensorRT 8.2/8.4's parser requires. Class scores are
spread with Equal/Where, not OneHot (which TensorRT's parser takes only from 8.5). Eager PyTorch runs
``torchvision.ops.batched_nms``: both suppress a box whose IoU with a kept box of its class is above the threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor

SCORE_FLOOR = 1e-6  # NonMaxSuppression's score_threshold: zero scores (other classes' rows) never enter a class's run


@torch.library.custom_op("edgepipe::nms_keep", mutates_args=())
def nms_keep(boxes: Tensor, scores: Tensor, classes: Tensor, iou: float, num_classes: int, max_boxes: int) -> Tensor:
    """[N, K] 1.0 where a candidate survives NMS among its image's boxes of its class, else 0.0."""
    import torchvision

    keep = torch.zeros_like(scores)
    for image in range(scores.shape[0]):
        candidates = (scores[image] > SCORE_FLOOR).nonzero().flatten()
        kept = torchvision.ops.batched_nms(boxes[image, candidates].float(), scores[image, candidates].float(),
                                           classes[image, candidates], iou)
        keep[image, candidates[kept]] = 1.0
    return keep


@nms_keep.register_fake
def _(boxes: Tensor, scores: Tensor, classes: Tensor, iou: float, num_classes: int, max_boxes: int) -> Tensor:
    return torch.empty_like(scores)


def nms_keep_onnx(boxes, scores, classes, iou: float, num_classes: int, max_boxes: int):
    """The ONNX graph of ``nms_keep`` (torch.onnx's custom_translation_table, traced with onnxscript ops)."""
    from onnxscript import opset18 as op

    ids = op.Constant(value_ints=list(range(num_classes)))
    class_axis = op.Reshape(ids, op.Constant(value_ints=[1, -1, 1]))  # [1, C, 1]
    same = op.Equal(op.Unsqueeze(op.Cast(classes, to=7), op.Constant(value_ints=[1])), class_axis)  # [N, C, K]
    zero = op.Sub(scores, scores)
    per_class = op.Where(same, op.Unsqueeze(scores, op.Constant(value_ints=[1])), op.Unsqueeze(zero, op.Constant(
        value_ints=[1])))
    selected = op.NonMaxSuppression(boxes, per_class, op.Constant(value_int=int(max_boxes)),
                                    op.Constant(value_float=float(iou)), op.Constant(value_float=SCORE_FLOOR))
    image_and_box = op.Gather(selected, op.Constant(value_ints=[0, 2]), axis=1)  # [M, 2]
    ones = op.Expand(op.CastLike(op.Constant(value_float=1.0), scores), op.Shape(selected, start=0, end=1))
    return op.ScatterND(zero, image_and_box, ones)


ONNX_TRANSLATIONS = {torch.ops.edgepipe.nms_keep.default: nms_keep_onnx}
