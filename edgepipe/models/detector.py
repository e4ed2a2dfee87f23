"""A small anchor-free detector (CenterNet, Zhou et al. 2019 "Objects as Points") and the decode that ends its
exported graph.

Training sees the raw head: a class heatmap (one channel per class, logits) and four box channels per cell (the
centre's sub-cell offset dx, dy and log width, log height in cells). Evaluation and export see the decoded
detections, fixed-shape so TensorRT 8.x-11.x runs them with no plugin and Triton can batch them:

    boxes [N, K, 4] (x1, y1, x2, y2 in input pixels) · scores [N, K] · classes [N, K] int32 · num_detections [N] int32

Decode is a peak test (a cell that equals the 3x3 max-pool of its class's heatmap: CenterNet's NMS substitute),
the best class per cell, and TopK(K) over the cells, sorted by score. Entries past ``num_detections`` have score 0
and class -1. Every op in it (Sigmoid, MaxPool, Equal, Where, ReduceMax, ArgMax, TopK, GatherElements, Exp, Clip,
Cast) is in TensorRT's ONNX parser since 8.0 (onnx-tensorrt's operators.md per release).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgepipe.device.scoring import DETECTION_OUTPUTS  # noqa: F401 - the names the device runtime packs by
from edgepipe.errors import EdgepipeError

HEATMAP_PRIOR = 0.1  # the heatmap starts at p = 0.1 everywhere (focal-loss practice, RetinaNet §4.1)


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class CenterNetDecode(nn.Module):
    """Raw CenterNet head maps -> fixed-shape detections. Reusable by a user's detector whose head follows the same
    contract (``heatmap`` [N, C, h, w] logits, ``box`` [N, 4, h, w] as dx, dy, log w, log h in cells)."""

    def __init__(self, stride: int, image_size: tuple[int, int], max_detections: int = 100,
                 score_threshold: float = 0.01, nms_iou: float | None = None) -> None:
        super().__init__()
        if nms_iou is not None and not 0.0 < nms_iou <= 1.0:
            raise EdgepipeError(f"nms_iou {nms_iou}: an IoU threshold in (0, 1], or null for no NMS")
        self.stride, self.image_size = stride, (int(image_size[0]), int(image_size[1]))
        self.max_detections, self.score_threshold, self.nms_iou = max_detections, score_threshold, nms_iou

    @property
    def onnx_translations(self) -> dict:
        """What the exporter needs to write this decode as ONNX: NonMaxSuppression when NMS is on."""
        if self.nms_iou is None:
            return {}
        from edgepipe.models.nms import ONNX_TRANSLATIONS

        return ONNX_TRANSLATIONS

    def forward(self, heatmap: torch.Tensor, box: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, h, w = heatmap.shape
        heat = torch.sigmoid(heatmap)
        peaks = torch.where(heat == F.max_pool2d(heat, 3, 1, 1), heat, torch.zeros_like(heat))
        score_map, class_map = peaks.max(dim=1)  # the best class per cell
        ys = torch.arange(h, dtype=heat.dtype, device=heat.device).view(1, h, 1).expand(1, h, w)
        xs = torch.arange(w, dtype=heat.dtype, device=heat.device).view(1, 1, w).expand(1, h, w)
        cx, cy = (xs + box[:, 0]) * self.stride, (ys + box[:, 1]) * self.stride
        half_w = torch.exp(box[:, 2].clamp(max=8.0)) * (self.stride / 2)  # clamp: exp stays finite in FP16
        half_h = torch.exp(box[:, 3].clamp(max=8.0)) * (self.stride / 2)
        height, width = self.image_size
        dense = torch.stack([(cx - half_w).clamp(0, width), (cy - half_h).clamp(0, height),
                             (cx + half_w).clamp(0, width), (cy + half_h).clamp(0, height)], dim=-1)
        k = min(self.max_detections, h * w)
        scores, index = score_map.reshape(n, h * w).topk(k, dim=1)
        boxes = dense.reshape(n, h * w, 4).gather(1, index.unsqueeze(-1).expand(n, k, 4))
        classes = class_map.reshape(n, h * w).gather(1, index)
        if self.nms_iou is not None:  # NonMaxSuppression in the graph (models/nms.py); shapes stay fixed
            from edgepipe.models.nms import nms_keep

            keep = nms_keep(boxes, scores, classes, float(self.nms_iou), int(heatmap.shape[1]), k)
            scores, order = (scores * keep).topk(k, dim=1)
            boxes = boxes.gather(1, order.unsqueeze(-1).expand(n, k, 4))
            classes = classes.gather(1, order)
        kept = scores >= self.score_threshold
        scores = torch.where(kept, scores, torch.zeros_like(scores))
        classes = torch.where(kept, classes, torch.full_like(classes, -1)).to(torch.int32)
        count = kept.to(scores.dtype).sum(dim=1).to(torch.int32)  # float sum: TensorRT 8 reduces no int32
        return {"boxes": boxes, "scores": scores, "classes": classes, "num_detections": count}


class DetectionHead(nn.Module):
    """The two 1x1 output convs: what pruning keeps whole (their widths are the classes and the box)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.heatmap = nn.Conv2d(channels, num_classes, 1)
        self.box = nn.Conv2d(channels, 4, 1)
        self.init_head()

    def init_head(self) -> None:
        nn.init.normal_(self.heatmap.weight, std=0.01)
        nn.init.constant_(self.heatmap.bias, -float(torch.log(torch.tensor((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))))
        nn.init.normal_(self.box.weight, std=0.01)
        nn.init.zeros_(self.box.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heatmap(features), self.box(features)


class CenterNet(nn.Module):
    """A ResNet-ish encoder to stride 16, a two-step feature pyramid back up to stride 4 (nearest upsample + a
    1x1 lateral, added), one 3x3 conv and the head. Width 16: ~0.2 M parameters, ~60 M MACs at 96x96."""

    stride = 4

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 16, max_detections: int = 100,
                 score_threshold: float = 0.01, nms_iou: float | None = None) -> None:
        super().__init__()
        channels, height, width_px = input_shape
        if height % 16 or width_px % 16:
            raise EdgepipeError(f"centernet takes images whose sides are multiples of 16, not {height}x{width_px}; "
                                "set dataset.image_size")
        c1, c2, c3, c4 = width, 2 * width, 4 * width, 6 * width
        self.stem = nn.Sequential(conv_bn_relu(channels, c1, 2), conv_bn_relu(c1, c1))  # /2
        self.stage4 = nn.Sequential(conv_bn_relu(c1, c2, 2), conv_bn_relu(c2, c2))  # /4
        self.stage8 = nn.Sequential(conv_bn_relu(c2, c3, 2), conv_bn_relu(c3, c3))  # /8
        self.stage16 = nn.Sequential(conv_bn_relu(c3, c4, 2), conv_bn_relu(c4, c4))  # /16: sees a whole 40-px digit
        self.lateral8 = nn.Conv2d(c3, c4, 1)
        self.reduce8 = conv_bn_relu(c4, c2)
        self.lateral4 = nn.Conv2d(c2, c2, 1)
        self.neck = conv_bn_relu(c2, c2)
        self.head = DetectionHead(c2, num_classes)
        self.decode = CenterNetDecode(self.stride, (height, width_px), max_detections, score_threshold, nms_iou)

    def init_head(self) -> None:  # edgepipe.models.initialize calls it after re-initializing every conv
        self.head.init_head()

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f4 = self.stage4(self.stem(x))
        f8 = self.stage8(f4)
        f16 = self.stage16(f8)
        up8 = self.reduce8(F.interpolate(f16, scale_factor=2.0, mode="nearest") + self.lateral8(f8))
        up4 = F.interpolate(up8, scale_factor=2.0, mode="nearest") + self.lateral4(f4)
        return self.head(self.neck(up4))

    def forward(self, x: torch.Tensor):
        heatmap, box = self.raw(x)
        if self.training:  # the loss reads the raw maps; everything else reads detections
            return {"heatmap": heatmap, "box": box}
        return self.decode(heatmap, box)
