"""Reading an ONNX file trained elsewhere: what is refused (one line each) and what is read of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepipe.errors import EdgepipeError
from edgepipe.foreign.onnx_file import read_foreign_onnx


def conv_model(shape=("batch", 3, 32, 32), elem=TensorProto.FLOAT, inputs=1) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "weight")
    nodes = [helper.make_node("Conv", ["images", "weight"], ["features"], pads=[1, 1, 1, 1])]
    graph_inputs = [helper.make_tensor_value_info("images", elem, list(shape))]
    if inputs == 2:
        graph_inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    output = helper.make_tensor_value_info("features", TensorProto.FLOAT, [shape[0], 4, *shape[2:]])
    graph = helper.make_graph(nodes, "g", graph_inputs, [output], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save(model, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def test_reads_the_input_spec_and_outputs(tmp_path):
    spec, model = read_foreign_onnx(save(conv_model(), tmp_path / "m.onnx"))
    assert (spec.input_name, spec.input_shape, spec.opset) == ("images", ("batch", 3, 32, 32), 17)
    assert spec.static_batch is None and spec.channels == 3 and list(spec.outputs) == ["features"]
    assert spec.input_size(None) == (32, 32) and spec.input_size((32, 32)) == (32, 32)
    fixed, _ = read_foreign_onnx(save(conv_model((1, 3, 32, 32)), tmp_path / "b1.onnx"))
    assert fixed.static_batch == 1


def test_size_must_agree_with_a_static_input_and_be_declared_for_a_dynamic_one(tmp_path):
    spec, _ = read_foreign_onnx(save(conv_model(), tmp_path / "m.onnx"))
    with pytest.raises(EdgepipeError, match=r"fixed at 32x32 .* asks for 64x64"):
        spec.input_size((64, 64))
    dynamic, _ = read_foreign_onnx(save(conv_model(("n", 3, "h", "w")), tmp_path / "d.onnx"))
    with pytest.raises(EdgepipeError, match="dynamic height/width .* declare the size"):
        dynamic.input_size(None)
    assert dynamic.input_size((48, 64)) == (48, 64)


@pytest.mark.parametrize("content", [b"not a model at all", b"\x89PNG\r\n\x1a\n" + bytes(64), b""])
def test_a_file_that_is_not_onnx_is_one_line(tmp_path, content):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(EdgepipeError, match="not an ONNX model"):
        read_foreign_onnx(path)


def test_inputs_edgepipe_cannot_feed_are_refused(tmp_path):
    with pytest.raises(EdgepipeError, match="2 inputs"):
        read_foreign_onnx(save(conv_model(inputs=2), tmp_path / "two.onnx"))
    with pytest.raises(EdgepipeError, match="UINT8; edgepipe feeds float32"):
        read_foreign_onnx(save(conv_model(elem=TensorProto.UINT8), tmp_path / "u8.onnx"))
    with pytest.raises(EdgepipeError, match=r"shape \[batch, 3, 32\]"):
        read_foreign_onnx(save(conv_model(("batch", 3, 32)), tmp_path / "3d.onnx"))


def test_external_data_must_stay_beside_the_model(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    model = conv_model()
    onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    spec, loaded = read_foreign_onnx(folder / "m.onnx")  # beside it: read, and the weights are in memory
    assert numpy_helper.to_array(loaded.graph.initializer[0]).sum() == 4 * 3 * 3 * 3

    secret = tmp_path / "secret.bin"
    secret.write_bytes((folder / "weights.bin").read_bytes())
    tampered = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for entry in tampered.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../secret.bin"
    onnx.save(tampered, str(folder / "out.onnx"))
    opened: list[str] = []
    with pytest.raises(EdgepipeError, match="points outside"):
        import sys

        def audit(event, args):
            if event == "open" and isinstance(args[0], str) and args[0].endswith("secret.bin"):
                opened.append(args[0])

        sys.addaudithook(audit)
        read_foreign_onnx(folder / "out.onnx")
    assert not opened, "the file outside the model's folder was opened"
