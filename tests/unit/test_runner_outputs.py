"""Runners name every input and output: a two-headed model and a two-input graph pass whole, on every backend."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from edgepipe.artifacts import new_manifest, write_manifest
from edgepipe.errors import EdgepipeError
from edgepipe.onnx_export import export_onnx
from edgepipe.recipe import ExportConfig
from edgepipe.runners.base import infer_all, infer_in_batches
from edgepipe.runners.onnxruntime import OrtRunner
from edgepipe.runners.select import runner_for_file


class TwoHeads(nn.Module):
    """What a detector looks like to a runner: one input, a dict of outputs of different shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 4, 3, padding=1)
        self.boxes = nn.Conv2d(4, 4, 1)
        self.scores = nn.Linear(4, 3)

    def forward(self, x):
        features = torch.relu(self.body(x))
        return {"boxes": self.boxes(features), "scores": self.scores(features.mean((2, 3)))}


def test_a_dict_of_outputs_exports_with_its_names_and_runs_whole(tmp_path):
    torch.manual_seed(0)
    model = TwoHeads().eval()
    x = np.random.default_rng(0).normal(size=(5, 1, 6, 6)).astype(np.float32)
    names = export_onnx(model, torch.from_numpy(x[:2]), tmp_path / "m.onnx",
                        ExportConfig(exporter="torchscript"))
    assert names == ["boxes", "scores"]
    with torch.inference_mode():
        expected = {name: value.numpy() for name, value in model(torch.from_numpy(x)).items()}
    with OrtRunner(tmp_path / "m.onnx") as runner:
        assert [o.name for o in runner.outputs] == ["boxes", "scores"]
        assert runner.outputs[0].shape[1:] == (4, 6, 6) and runner.outputs[1].shape[1:] == (3,)
        outputs = infer_all(runner, x, batch_size=2)  # chunks of 2, 2, 1 concatenated per output
    assert set(outputs) == {"boxes", "scores"}
    for name in outputs:
        np.testing.assert_allclose(outputs[name], expected[name], atol=1e-5)


def _two_input_graph(path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["product"])], "two",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3]) for name in ("a", "b")],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3]) for name in ("sum", "product")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_a_two_input_graph_takes_a_feed_by_name(tmp_path):
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.full((2, 3), 2, np.float32)
    with runner_for_file(_two_input_graph(tmp_path / "two.onnx")) as runner:
        assert [s.name for s in runner.inputs] == ["a", "b"]
        out = runner.infer({"a": a, "b": b})
        np.testing.assert_array_equal(out["sum"], a + b)
        np.testing.assert_array_equal(out["product"], a * b)
        np.testing.assert_array_equal(infer_in_batches(runner, {"a": a, "b": b}, batch_size=1), a + b)
        assert runner.source == tmp_path / "two.onnx" and runner.note is None


@pytest.mark.parametrize("feed, message", [
    (np.zeros((2, 3), np.float32), "has 2 inputs"),
    ({"a": np.zeros((2, 3), np.float32)}, "do not match the model's inputs"),
    ({"a": np.zeros((2, 3), np.float32), "b": np.zeros((3, 3), np.float32)}, "disagree on the batch size"),
])
def test_a_feed_that_does_not_fit_is_one_line(tmp_path, feed, message):
    with runner_for_file(_two_input_graph(tmp_path / "two.onnx")) as runner, pytest.raises(EdgepipeError,
                                                                                           match=message):
        infer_all(runner, feed)


def test_an_engine_falls_back_to_its_onnx_only_when_asked(tmp_path, monkeypatch):
    from edgepipe.runners import select

    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    _two_input_graph(run / "export" / "model.onnx")
    write_manifest(run / "export", new_manifest("export", {}))
    (run / "build-fp16").mkdir()
    (run / "build-fp16" / "model.fp16.engine").write_bytes(b"engine")
    monkeypatch.setattr(select, "tensorrt_problem", lambda: "no CUDA GPU is visible")
    runner = runner_for_file(run / "build-fp16" / "model.fp16.engine", fallback=True)
    assert runner.backend == "onnxruntime" and runner.source == run / "export" / "model.onnx"
    assert "no CUDA GPU is visible" in runner.note
    assert runner_for_file(run / "build-fp16" / "model.fp16.engine").backend == "tensorrt"
