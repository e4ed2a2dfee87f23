"""A foreign ONNX exported with a fixed batch: freed where that is provably the same model (foreign/batch.py),
refused in one line where the graph bakes its batch in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgepipe.errors import EdgepipeError
from edgepipe.foreign.batch import make_batch_dynamic


class Flattens(nn.Module):
    """Batch-agnostic inside: Flatten keeps axis 0 whatever it is."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images).flatten(1)


class ViewsWithItsBatch(Flattens):
    """YOLO's ``x.view(shape[0], self.no, -1)``: a static export folds shape[0] into the Reshape's constant."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.conv(images)
        return out.view(images.shape[0], 6, -1)


class MixesSamples(Flattens):
    """Folds the batch into the channels (``view(N * C, -1)``): no rewrite can make this per-sample."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.conv(images)
        return out.reshape(images.shape[0] * 6, -1)


def static_export(module: nn.Module, path: Path, batch: int = 1) -> onnx.ModelProto:
    torch.manual_seed(0)
    module.eval()
    torch.onnx.export(module, (torch.zeros(batch, 3, 16, 16),), str(path), input_names=["images"],
                      output_names=["output0"], opset_version=17, dynamo=False)
    return onnx.load(str(path))


def samples(count: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((count, 3, 16, 16)).astype(np.float32)


def run(graph: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(None,
                                                                                                   {"images": x})[0]


@pytest.mark.parametrize(("module", "reshapes"), [(Flattens, 0), (ViewsWithItsBatch, 1)])
def test_a_fixed_batch_is_freed_and_every_sample_gets_its_own_result(tmp_path, module, reshapes):
    graph = static_export(module(), tmp_path / "m.onnx")
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    freed, rewritten = make_batch_dynamic(graph, "images", 1, samples(8), "m.onnx")
    assert rewritten == reshapes
    assert freed.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = samples(5)
    together = run(freed, x)
    one_by_one = np.concatenate([run(graph, x[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-6)


def test_a_graph_that_mixes_its_batch_into_other_axes_is_refused(tmp_path):
    graph = static_export(MixesSamples(), tmp_path / "m.onnx")
    with pytest.raises(EdgepipeError, match=r"m.onnx: input 'images' has a fixed batch of 1 that the graph bakes in "
                                            r"\(.*\); re-export it with a dynamic batch axis .*dynamic=True"):
        make_batch_dynamic(graph, "images", 1, samples(8), "m.onnx")


def test_a_fixed_batch_of_four_is_checked_at_eight(tmp_path):
    graph = static_export(ViewsWithItsBatch(), tmp_path / "m.onnx", batch=4)
    freed, _ = make_batch_dynamic(graph, "images", 4, samples(8), "m.onnx")
    assert run(freed, samples(3)).shape == (3, 6, 49)
    with pytest.raises(EdgepipeError, match="fixed batch of 4, more than half the val split"):
        make_batch_dynamic(graph, "images", 4, samples(6), "m.onnx")
