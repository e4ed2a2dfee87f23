"""2:4 masks: the pattern, which layers qualify, masks surviving optimizer steps, and the check on ONNX weights."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgepipe.pruning.measure import export_for_timing
from edgepipe.pruning.sparsity24 import (
    MaskKeeper,
    eligible_layers,
    follows_2_4,
    magnitude_masks,
    mask_2_4,
    onnx_weight_patterns,
)


class SparseFriendly(nn.Module):
    """Conv 16->32 and Linear 32->16 qualify; the stem (1 input channel), depthwise conv and classifier do not."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.fc = nn.Linear(32, 16)
        self.classifier = nn.Linear(16, 8)

    def forward(self, x):
        x = self.depthwise(torch.relu(self.conv(torch.relu(self.stem(x)))))
        return self.classifier(torch.relu(self.fc(x.mean(dim=(2, 3)))))


def test_mask_keeps_the_two_largest_of_every_four_input_channels():
    torch.manual_seed(0)
    weight = torch.randn(8, 16, 3, 3)
    mask = mask_2_4(weight)
    assert mask.shape == weight.shape
    groups = weight.permute(0, 2, 3, 1).reshape(-1, 4)  # input channels are the grouped axis
    kept = mask.permute(0, 2, 3, 1).reshape(-1, 4).bool()
    assert (kept.sum(dim=1) == 2).all()
    largest = groups.abs().topk(2, dim=1).indices
    assert kept.gather(1, largest).all()
    assert follows_2_4(weight * mask) and not follows_2_4(weight)
    # grouping along the wrong axis (kernel positions, output channels) would not pass this check
    assert not follows_2_4((weight * mask).numpy(), axis=0)


def test_linear_mask_and_shapes_that_cannot_hold_the_pattern():
    weight = torch.arange(1.0, 17.0).reshape(2, 8)
    masked = weight * mask_2_4(weight)
    assert masked[0].tolist() == [0, 0, 3, 4, 0, 0, 7, 8]
    assert not follows_2_4(np.ones((4, 6)))  # 6 input channels: no groups of 4


def test_eligible_layers_follow_the_tensor_core_shape_rules():
    model = SparseFriendly()
    assert sorted(eligible_layers(model, ignored={"classifier"})) == ["conv", "fc"]
    assert sorted(eligible_layers(model, ignored={"classifier", "fc"})) == ["conv"]


def test_mask_keeper_restores_the_zeros_after_optimizer_steps():
    torch.manual_seed(0)
    model = SparseFriendly()
    layers = eligible_layers(model, ignored={"classifier"})
    keeper = MaskKeeper(layers, magnitude_masks(layers))
    keeper()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 1, 8, 8)).square().sum().backward()
        optimizer.step()
        assert not follows_2_4(model.conv.weight)  # the optimizer moved the pruned weights ...
        keeper(model)
        assert all(follows_2_4(module.weight) for module in layers.values())  # ... and the hook zeroed them again


def test_pattern_is_verified_on_the_exported_onnx_initializers(tmp_path):
    torch.manual_seed(0)
    model = SparseFriendly().eval()
    dense = {p.initializer: p.sparse_2_4 for p in onnx_weight_patterns(export_for_timing(model, [1, 8, 8],
                                                                                         tmp_path / "dense.onnx"))}
    assert dense and not any(dense.values())

    layers = eligible_layers(model, ignored={"classifier"})
    MaskKeeper(layers, magnitude_masks(layers))()
    patterns = onnx_weight_patterns(export_for_timing(model, [1, 8, 8], tmp_path / "sparse.onnx"))
    sparse = sorted(p.op for p in patterns if p.sparse_2_4)
    assert sparse == ["Conv", "Gemm"]  # conv and fc, found through their ONNX nodes
    assert {p.op for p in patterns if not p.sparse_2_4} >= {"Gemm"}  # the classifier stays dense
