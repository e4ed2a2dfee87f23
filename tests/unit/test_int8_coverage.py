"""The share of an INT8 graph that is INT8, by layers and MACs, on real onnxruntime QDQ graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgepipe.quant.coverage import describe_coverage, int8_coverage


class TwoConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 4, 3, padding=1)  # 8*8 outputs x 4 channels x 9 MACs = 2,304
        self.second = nn.Conv2d(4, 8, 3, padding=1)  # 8*8 x 8 x (4*9) = 18,432
        self.fc = nn.Linear(8 * 8 * 8, 10)  # 5,120

    def forward(self, x):
        return self.fc(torch.relu(self.second(torch.relu(self.first(x)))).flatten(1))


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    path = tmp_path_factory.mktemp("coverage") / "model.onnx"
    torch.onnx.export(TwoConvs().eval(), (torch.rand(1, 1, 8, 8),), str(path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "n"}}, opset_version=17, dynamo=False)
    return path


def quantized(fp32, out, exclude=()):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"input": np.random.default_rng(i).random((2, 1, 8, 8), np.float32)} for i in range(4)])

        def get_next(self):
            return next(self.feeds, None)

    import onnx

    names = [node.name for node in onnx.load(str(fp32)).graph.node if node.op_type in ("Conv", "Gemm")]
    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=[names[i] for i in exclude])
    return out


def test_float_graph_has_no_int8(fp32):
    coverage = int8_coverage(fp32)
    assert coverage["layers"] == 3 and coverage["int8_layers"] == 0 and coverage["macs"] == 2304 + 18432 + 5120


def test_every_layer_and_one_kept_float(fp32, tmp_path):
    full = int8_coverage(quantized(fp32, tmp_path / "all.onnx"))
    assert (full["layers"], full["int8_layers"], full["mac_fraction"]) == (3, 3, 1.0)
    partial = int8_coverage(quantized(fp32, tmp_path / "some.onnx", exclude=(1,)))  # the big conv stays float
    assert (partial["layers"], partial["int8_layers"]) == (3, 2)
    assert partial["mac_fraction"] == pytest.approx((2304 + 5120) / (2304 + 18432 + 5120), abs=1e-4)
    assert describe_coverage(partial) == "INT8: 2/3 layers, 28.7 % of MACs"


def test_naive_int8_quantizes_every_layer_per_tensor_from_the_saved_ranges(fp32, tmp_path):
    import onnx
    from onnx import numpy_helper

    from edgepipe.quant.calibration import ArrayDataReader
    from edgepipe.quant.naive import naive_int8
    from edgepipe.quant.tracks import calibrate, preprocess

    prepared = preprocess(fp32, tmp_path / "prepared.onnx")
    data = np.random.default_rng(0).random((16, 1, 8, 8), np.float32)
    calibrate(prepared, ArrayDataReader(data, "input"), "minmax", 99.99, tmp_path / "ranges.json")
    naive = naive_int8(prepared, tmp_path / "naive.onnx", "minmax", tmp_path / "ranges.json")
    assert int8_coverage(naive)["int8_layers"] == 3
    graph = onnx.load(str(naive)).graph
    scales = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    weight_dq = [node for node in graph.node if node.op_type == "DequantizeLinear" and node.input[0] in scales
                 and scales[node.input[0]].ndim == 4]
    assert weight_dq and all(scales[node.input[1]].size == 1 for node in weight_dq)  # per-tensor, as the defaults
