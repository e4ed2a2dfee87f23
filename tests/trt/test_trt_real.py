"""Real TensorRT + CUDA: build engines from a tiny exported conv net and compare with onnxruntime.

Runs wherever TensorRT and a CUDA GPU exist; elsewhere each test skips with the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepipe.trt.loader import tensorrt_available

pytestmark = pytest.mark.tensorrt


@pytest.fixture(scope="module")
def trt_ready():
    available, reason = tensorrt_available()
    if not available:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {reason}")
    return reason


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, np.ndarray]:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    ).eval()
    run = tmp_path_factory.mktemp("trt") / "run"
    (run / "export").mkdir(parents=True)
    onnx_path = run / "export" / "model.onnx"
    torch.onnx.export(
        net,
        torch.zeros(1, 1, 28, 28),
        str(onnx_path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    batch = np.random.default_rng(0).normal(size=(16, 1, 28, 28)).astype(np.float32)
    return onnx_path, batch


@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-3), ("fp16", 5e-2)])
def test_engine_matches_onnxruntime(trt_ready, exported, precision, atol):
    import onnxruntime as ort

    from edgepipe.recipe import BuildConfig
    from edgepipe.runners.tensorrt import TrtRunner
    from edgepipe.stages.build import build

    onnx_path, batch = exported
    reference = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"input": batch}
    )[0]
    stage = build(onnx_path, None, BuildConfig(precision=precision, batch=(1, 8, 16)))
    with TrtRunner(stage / f"model.{precision}.engine") as runner:
        out = runner.infer(batch)["logits"]
        assert runner.last_timing.gpu_compute_ms > 0
    np.testing.assert_allclose(out, reference, atol=atol, rtol=atol)
    assert (out.argmax(1) == reference.argmax(1)).mean() >= 0.9
