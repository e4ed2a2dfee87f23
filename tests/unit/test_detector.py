"""The zoo detector, its in-graph decode and the packed-detections contract the tasks and the device runtime share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgepipe.device.scoring import DETECTION_OUTPUTS, box_agreement, model_outputs, pack_detections
from edgepipe.errors import EdgepipeError
from edgepipe.models import build_model, initialize
from edgepipe.models.detector import DETECTION_OUTPUTS as MODEL_OUTPUTS
from edgepipe.models.detector import CenterNetDecode
from edgepipe.tasks.detection import CenterNetLoss


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _raw_maps(classes=3, size=8):
    heatmap = torch.full((1, classes, size, size), _logit(1e-4))
    box = torch.zeros(1, 4, size, size)
    return heatmap, box


def test_the_model_and_the_device_runtime_name_the_same_outputs():
    assert MODEL_OUTPUTS is DETECTION_OUTPUTS  # defined once, on the device side


def test_decode_reads_boxes_off_peaks_sorted_by_score():
    heatmap, box = _raw_maps()
    heatmap[0, 2, 3, 5] = _logit(0.9)  # class 2 at cell (x 5, y 3)
    box[0, :, 3, 5] = torch.tensor([0.5, 0.25, float(np.log(4.0)), float(np.log(2.0))])  # 16 x 8 px at stride 4
    heatmap[0, 0, 6, 1] = _logit(0.6)
    heatmap[0, 0, 6, 2] = _logit(0.5)  # a weaker neighbour of the same class: not a peak
    decode = CenterNetDecode(stride=4, image_size=(32, 32), max_detections=5, score_threshold=0.05)
    out = decode(heatmap, box)
    assert out["scores"][0, :2].tolist() == pytest.approx([0.9, 0.6], abs=1e-5)
    assert out["classes"][0].tolist() == [2, 0, -1, -1, -1]
    assert out["num_detections"].tolist() == [2]
    assert out["classes"].dtype == out["num_detections"].dtype == torch.int32
    cx, cy = (5 + 0.5) * 4, (3 + 0.25) * 4
    assert out["boxes"][0, 0].tolist() == pytest.approx([cx - 8, cy - 4, cx + 8, cy + 4], abs=1e-4)
    assert (out["scores"][0, 2:] == 0).all()


def test_decode_clips_boxes_to_the_image():
    heatmap, box = _raw_maps()
    heatmap[0, 1, 0, 0] = _logit(0.8)
    box[0, 2:, 0, 0] = float(np.log(10.0))  # 40 px around a corner cell
    out = CenterNetDecode(4, (32, 32), max_detections=3)(heatmap, box)
    x1, y1, x2, y2 = out["boxes"][0, 0].tolist()
    assert (x1, y1) == (0.0, 0.0) and x2 <= 32 and y2 <= 32


def test_pack_detections_empties_rows_past_the_count():
    boxes = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    scores = np.array([[0.9, 0.5, 0.2], [0.7, 0.1, 0.05]], np.float32)
    classes = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    packed = pack_detections(boxes, scores, classes, np.array([2, 0]))
    assert packed.shape == (2, 3, 6)
    assert packed[0, :2, 5].tolist() == [1, 2] and packed[0, 2, 5] == -1
    assert (packed[1, :, 5] == -1).all() and (packed[1, :, :5] == 0).all()
    assert packed[0, 1, :5].tolist() == [4, 5, 6, 7, 0.5]


def test_model_outputs_packs_a_detector_and_passes_anything_else_through():
    logits = np.ones((2, 10), np.float32)
    assert model_outputs({"logits": logits}) is not None and model_outputs({"logits": logits}).shape == (2, 10)
    named = {"boxes": np.zeros((2, 4, 4)), "scores": np.zeros((2, 4)), "classes": np.zeros((2, 4)),
             "num_detections": np.zeros(2)}
    assert model_outputs(named).shape == (2, 4, 6)


def test_centernet_trains_raw_and_evaluates_decoded():
    model = build_model({"name": "centernet", "input_shape": [1, 64, 64], "num_classes": 10,
                         "params": {"width": 8, "max_detections": 20}})
    initialize(model, "kaiming")
    model.train()
    raw = model(torch.randn(2, 1, 64, 64))
    assert raw["heatmap"].shape == (2, 10, 16, 16) and raw["box"].shape == (2, 4, 16, 16)
    # kaiming init must not wipe the heatmap prior: every cell starts at p = 0.1
    assert torch.sigmoid(model.head.heatmap.bias).tolist() == pytest.approx([0.1] * 10, abs=1e-6)
    model.eval()
    out = model(torch.randn(3, 1, 64, 64))
    assert list(out) == list(DETECTION_OUTPUTS)
    assert out["boxes"].shape == (3, 20, 4) and out["num_detections"].shape == (3,)


def test_centernet_refuses_sides_that_do_not_divide_by_16():
    with pytest.raises(Exception, match="multiples of 16"):
        build_model({"name": "centernet", "input_shape": [1, 90, 96], "num_classes": 3})


def _targets():
    return torch.tensor([[[8.0, 12.0, 28.0, 36.0, 1.0], [40.0, 4.0, 60.0, 30.0, 2.0], [0, 0, 0, 0, -1.0]]])


def test_the_loss_is_lowest_for_the_maps_it_asks_for():
    loss = CenterNetLoss((64, 64))
    heatmap = torch.full((1, 3, 16, 16), _logit(1e-3))
    box = torch.zeros(1, 4, 16, 16)
    for x1, y1, x2, y2, k in _targets()[0, :2].tolist():
        cx, cy = (x1 + x2) / 8, (y1 + y2) / 8
        heatmap[0, int(k), int(cy), int(cx)] = _logit(0.999)
        box[0, :, int(cy), int(cx)] = torch.tensor([cx - int(cx), cy - int(cy), np.log((x2 - x1) / 4),
                                                    np.log((y2 - y1) / 4)])
    good = loss({"heatmap": heatmap, "box": box}, _targets())
    shifted = loss({"heatmap": heatmap.roll(3, dims=3), "box": box}, _targets())
    random = loss({"heatmap": torch.randn(1, 3, 16, 16), "box": torch.randn(1, 4, 16, 16)}, _targets())
    assert good < 0.1 < shifted and good < random


def test_the_loss_ignores_padding_rows_and_backpropagates():
    heatmap = torch.zeros(1, 3, 16, 16, requires_grad=True)
    box = torch.zeros(1, 4, 16, 16, requires_grad=True)
    value = CenterNetLoss((64, 64))((heatmap, box), _targets())
    value.backward()
    assert torch.isfinite(value) and heatmap.grad.abs().sum() > 0 and box.grad.abs().sum() > 0
    padded_only = CenterNetLoss((64, 64))((heatmap, box), torch.tensor([[[0, 0, 0, 0, -1.0]]]))
    assert torch.isfinite(padded_only)


def _exported_beside_eager(model, path):
    """Export ``model`` (batch 2) to ``path``, run 5 inputs on onnxruntime and in PyTorch: (got, want) packed
    [5, K, 6] detections."""
    import onnxruntime as ort

    from edgepipe.onnx_export import export_onnx, scored_outputs
    from edgepipe.recipe import ExportConfig

    x = torch.randn(5, 1, 64, 64)
    assert export_onnx(model, x[:2], path, ExportConfig(opset=17)) == list(DETECTION_OUTPUTS)
    session = ort.InferenceSession(str(path))
    names = [o.name for o in session.get_outputs()]
    got = model_outputs(dict(zip(names, session.run(None, {"input": x.numpy()}), strict=True)))
    want = scored_outputs(model(x))
    assert got.shape == want.shape == (5, 30, 6)
    return got, want


def test_export_runs_the_same_decode_on_onnxruntime(tmp_path):
    from edgepipe.quant.tracks import decode_nodes

    torch.manual_seed(0)
    model = build_model({"name": "centernet", "input_shape": [1, 64, 64], "num_classes": 4,
                         "params": {"width": 8, "max_detections": 30}}).eval()
    path = tmp_path / "det.onnx"
    got, want = _exported_beside_eager(model, path)
    assert np.abs(np.sort(got[..., 4], 1) - np.sort(want[..., 4], 1)).max() < 1e-5
    decode = decode_nodes(path)
    ops = {node.name: node.op_type for node in __import__("onnx").load(str(path)).graph.node}
    assert {"TopK", "MaxPool", "Sigmoid"} <= {ops[name] for name in decode}
    assert "Conv" not in {ops[name] for name in decode}


def test_nms_in_the_decode_drops_a_same_class_neighbour_and_keeps_shapes():
    """Two peaks of one class whose boxes overlap (IoU 0.6): NMS keeps the stronger; an overlapping box of another
    class stays; the outputs keep their fixed shapes and sorted order."""
    heatmap, box = _raw_maps()
    box[0, 2:] = float(np.log(4.0))  # 16 x 16 px boxes everywhere
    heatmap[0, 1, 2, 2] = _logit(0.9)
    heatmap[0, 1, 2, 4] = _logit(0.8)  # 8 px to the right: IoU with the first = 8*16 / (16*16 + 8*16) = 1/3
    heatmap[0, 1, 5, 5] = _logit(0.7)
    heatmap[0, 1, 6, 5] = _logit(0.6)  # the next cell down: the peak test already hides it, NMS or not
    heatmap[0, 2, 2, 3] = _logit(0.5)  # another class over the first two
    plain = CenterNetDecode(4, (32, 32), max_detections=6, score_threshold=0.05)
    with_nms = CenterNetDecode(4, (32, 32), max_detections=6, score_threshold=0.05, nms_iou=0.3)
    before, after = plain(heatmap, box), with_nms(heatmap, box)
    assert before["classes"][0].tolist()[:4] == [1, 1, 1, 2]
    assert after["classes"][0].tolist() == [1, 1, 2, -1, -1, -1]  # 0.8 overlaps 0.9 by IoU 1/3 > 0.3: gone
    assert after["scores"][0, :3].tolist() == pytest.approx([0.9, 0.7, 0.5], abs=1e-5)
    assert after["num_detections"].tolist() == [3]
    assert {k: tuple(v.shape) for k, v in after.items()} == {k: tuple(v.shape) for k, v in before.items()}
    with pytest.raises(EdgepipeError, match="nms_iou"):
        CenterNetDecode(4, (32, 32), nms_iou=1.5)


def test_nms_exports_as_nonmaxsuppression_that_onnxruntime_and_tensorrt_85_run(tmp_path):
    """The decode with NMS exports as ONNX NonMaxSuppression (batch and class axes native, constants for the
    thresholds), runs on onnxruntime like PyTorch at any batch, and the preflight passes it for TensorRT 8.5 and
    10.3 (INMSLayer) while flagging it experimental on 8.2."""
    import onnx

    from edgepipe.preflight.operators import check_operators

    torch.manual_seed(0)
    model = build_model({"name": "centernet", "input_shape": [1, 64, 64], "num_classes": 4,
                         "params": {"width": 8, "max_detections": 30, "nms_iou": 0.5}}).eval()
    with torch.no_grad():  # 24-px boxes from every cell: an untrained head's peaks overlap, so NMS has work
        model.head.box.bias[2:] = float(np.log(6.0))
    path = tmp_path / "det-nms.onnx"
    got, want = _exported_beside_eager(model, path)
    graph = onnx.load(str(path))
    assert "NonMaxSuppression" in {node.op_type for node in graph.graph.node}
    # near-equal scores of an untrained head may swap places: compare what was kept, not the row order
    assert np.abs(np.sort(got[..., 4], 1) - np.sort(want[..., 4], 1)).max() < 1e-5
    assert (got[..., 5] >= 0).sum() == (want[..., 5] >= 0).sum() < 5 * 30  # NMS removed some
    assert box_agreement(got, want, min_score=0.01) == pytest.approx(1.0)
    for version in ("8.5.2", "10.3.0", "8.2.1"):
        findings = [f for f in check_operators(graph, version) if f.severity == "error"]
        assert not findings, (version, findings)
    experimental = [f for f in check_operators(graph, "8.2.1") if "NonMaxSuppression" in f.message]
    assert experimental and experimental[0].severity == "warning"


def test_prune_times_an_nms_detector_through_the_exporter_that_writes_its_nms(tmp_path):
    """prune's quick timing export uses TorchScript, which has no translation for the NMS op: dynamo then."""
    import onnx

    from edgepipe.pruning.measure import export_for_timing

    model = build_model({"name": "centernet", "input_shape": [1, 32, 32], "num_classes": 3,
                         "params": {"width": 8, "max_detections": 10, "nms_iou": 0.5}})
    path = export_for_timing(model, [1, 32, 32], tmp_path / "timing.onnx")
    assert "NonMaxSuppression" in {node.op_type for node in onnx.load(str(path)).graph.node}
