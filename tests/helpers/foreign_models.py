"""Detectors "trained elsewhere": a trained CenterNet's raw maps re-laid out exactly as YOLO exports lay out their
outputs, written by plain ``torch.onnx.export`` (TorchScript, opset < 18) as a user's script would, not by edgepipe.

The maps are real (trained on mnist-canvas), so an imported graph's mAP is real; nothing of edgepipe's decode is
inside the file: neighbouring cells fire for one digit, so the appended NMS has work to do (no 3x3 peak test).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _dense(centernet: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every cell's box as centre x, centre y, width, height in input pixels [N, 4, A], and its class
    probabilities [N, C, A]."""
    heatmap, box = centernet.raw(x)
    n, classes, h, w = heatmap.shape
    stride = centernet.stride
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
    cx, cy = (xs + box[:, 0]) * stride, (ys + box[:, 1]) * stride
    width = torch.exp(box[:, 2].clamp(max=8.0)) * stride
    height = torch.exp(box[:, 3].clamp(max=8.0)) * stride
    xywh = torch.stack([cx, cy, width, height], dim=1).reshape(n, 4, h * w)
    return xywh, torch.sigmoid(heatmap).reshape(n, classes, h * w)


class AsYoloV8(nn.Module):
    """[N, 4 + C, A]: YOLOv8 / YOLO11's ``output0``."""

    def __init__(self, centernet: nn.Module) -> None:
        super().__init__()
        self.centernet = centernet

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        xywh, probabilities = _dense(self.centernet, images)
        return torch.cat([xywh, probabilities], dim=1)


class AsYoloV5(nn.Module):
    """[N, A, 5 + C]: YOLOv5's ``output0`` (objectness = the best class probability, classes renormalized)."""

    def __init__(self, centernet: nn.Module) -> None:
        super().__init__()
        self.centernet = centernet

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        xywh, probabilities = _dense(self.centernet, images)
        objectness = probabilities.max(dim=1, keepdim=True).values
        classes = probabilities / objectness.clamp(min=1e-6)
        return torch.cat([xywh, objectness, classes], dim=1).transpose(1, 2)


class AsEndToEnd(nn.Module):
    """[N, K, 6] (x1, y1, x2, y2, score, class): an export with its own decode inside (YOLOv10/YOLO26 style)."""

    def __init__(self, centernet: nn.Module) -> None:
        super().__init__()
        self.centernet = centernet

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        detections = self.centernet.decode(*self.centernet.raw(images))
        return torch.cat([detections["boxes"], detections["scores"].unsqueeze(-1),
                          detections["classes"].to(images.dtype).unsqueeze(-1)], dim=-1)


def export_plain(module: nn.Module, path: Path, size: tuple[int, int], channels: int = 3, opset: int = 17) -> Path:
    """What a user's script writes: torch.onnx.export (TorchScript), dynamic batch, ``images`` -> ``output0``."""
    module.eval()
    example = torch.zeros(1, channels, *size)
    torch.onnx.export(module, (example,), str(path), input_names=["images"], output_names=["output0"],
                      dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}}, opset_version=opset,
                      dynamo=False)
    return path
