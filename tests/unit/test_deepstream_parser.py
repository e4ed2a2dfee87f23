"""The DeepStream bounding-box parser a detection bundle ships (deepstream/nvdsinfer_edgepipe.cpp), compiled here with
the bundle's own Makefile and called the way Gst-nvinfer calls it (dlopen, dlsym, once per frame with that frame's
slice of each output), on a real detector's outputs: its objects must be exactly the numpy reading of the same
outputs (the device runtime's pack_detections, the per-class threshold, boxes clipped to the network input).

DeepStream itself is not installed here: tests/data/deepstream/nvdsinfer_custom_impl.h reproduces the struct layouts
and prototypes of DeepStream 6.0/6.1's nvdsinfer.h and nvdsinfer_custom_impl.h that the parser uses.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgepipe.device.layout import DEEPSTREAM, PARSER_FUNCTION, PARSER_LIBRARY
from edgepipe.device.scoring import DETECTION_OUTPUTS, pack_detections

REPO = Path(__file__).resolve().parents[2]
HEADERS = REPO / "tests" / "data" / "deepstream"
NV_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int8): 2, np.dtype(np.int32): 3}

pytestmark = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                                reason="no g++ or make here: the parser test compiles the C++ parser")


@pytest.fixture(scope="module")
def parser(tiny_detection_bundle, tmp_path_factory) -> tuple[Path, Path]:
    """(the parser library built by the bundle's Makefile, the nvinfer-like driver)."""
    build = tmp_path_factory.mktemp("parser") / DEEPSTREAM
    shutil.copytree(tiny_detection_bundle / DEEPSTREAM, build)  # exactly what the device gets
    made = subprocess.run(["make", "-C", str(build), f"DS_INCLUDE={HEADERS}"], capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    driver = build / "parse_driver"
    compiled = subprocess.run(["g++", "-std=c++11", "-O1", "-Wall", f"-I{HEADERS}", "-o", str(driver),
                               str(HEADERS / "parse_driver.cpp"), "-ldl"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    return build / PARSER_LIBRARY, driver


@pytest.fixture(scope="module")
def detector_outputs(tiny_detection_bundle) -> dict[str, np.ndarray]:
    """The bundle's model.onnx on its stored samples, as onnxruntime returns them (the engine's dtypes)."""
    with np.load(tiny_detection_bundle / "reference.npz", allow_pickle=False) as data:
        x = data["x"]
    session = ort.InferenceSession(str(tiny_detection_bundle / "export" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    values = session.run(None, {session.get_inputs()[0].name: x})
    return dict(zip([output.name for output in session.get_outputs()], values, strict=True))


def _parse(parser, outputs, thresholds, size, tmp_path, names=DETECTION_OUTPUTS):
    """The driver's objects: [(frame, class, left, top, width, height, confidence)] with float32 values."""
    library, driver = parser
    layers = []
    for name in names:
        array = np.ascontiguousarray(outputs[name])
        path = tmp_path / f"{name}.bin"
        array.tofile(path)
        dims = "x".join(str(d) for d in array.shape[1:]) or "-"  # one frame's dims: nvinfer drops the batch axis
        layers.append(f"{name}:{NV_DTYPES[array.dtype]}:{dims}:{path}")
    frames = len(outputs[names[0]])
    result = subprocess.run([str(driver), str(library), PARSER_FUNCTION, str(size[1]), str(size[0]),
                             str(len(thresholds)), ",".join(repr(float(t)) for t in thresholds), str(frames),
                             *layers], capture_output=True, text=True)
    if result.returncode != 0:
        return result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    return [(int(r[0]), int(r[1]), *(np.float32(v) for v in r[2:])) for r in rows]


def _numpy_objects(outputs, thresholds, size):
    """What nvinfer should receive, read with the device runtime's own packer (rows past num_detections emptied)."""
    packed = pack_detections(*[outputs[name] for name in DETECTION_OUTPUTS])
    width, height = np.float32(size[1]), np.float32(size[0])
    objects = []
    for frame, rows in enumerate(packed):
        for x1, y1, x2, y2, score, label in rows:
            if label < 0 or label >= len(thresholds) or not score >= thresholds[int(label)]:
                continue
            left, top = np.clip(x1, 0, width), np.clip(y1, 0, height)
            right, bottom = np.clip(x2, 0, width), np.clip(y2, 0, height)
            if right > left and bottom > top:
                objects.append((frame, int(label), left, top, right - left, bottom - top, score))
    return objects


def _thresholds(outputs, classes):
    """Per class: the median score of its detections (so about half pass), distinct per class."""
    packed = pack_detections(*[outputs[name] for name in DETECTION_OUTPUTS])
    valid = packed[packed[..., 5] >= 0]
    return np.array([np.median(valid[valid[:, 5] == c, 4]) if (valid[:, 5] == c).any() else 0.5
                     for c in range(classes)], np.float32)


def test_the_graph_gives_the_dtypes_the_parser_reads(detector_outputs):
    assert {name: str(detector_outputs[name].dtype) for name in DETECTION_OUTPUTS} == {
        "boxes": "float32", "scores": "float32", "classes": "int32", "num_detections": "int32"}
    assert detector_outputs["num_detections"].ndim == 1  # [N]: one count per frame, an empty per-frame shape


def test_parser_objects_equal_the_numpy_reading(parser, detector_outputs, tiny_detection_bundle, tmp_path):
    from edgepipe.device.bundle import Bundle

    bundle = Bundle(tiny_detection_bundle)
    size = bundle.manifest["dataset"]["preprocessing"]["size"]
    thresholds = _thresholds(detector_outputs, len(bundle.labels()))
    expected = _numpy_objects(detector_outputs, thresholds, size)
    counted = int(detector_outputs["num_detections"].sum())
    assert 0 < len(expected) < counted  # the thresholds keep some detections and drop others
    assert _parse(parser, detector_outputs, thresholds, size, tmp_path) == expected


def test_fp16_outputs_and_a_float_count_read_the_same(parser, detector_outputs, tmp_path):
    """An FP16 engine may return half boxes and scores; some exporters count in float."""
    thresholds = _thresholds(detector_outputs, 10)
    halved = {"boxes": detector_outputs["boxes"].astype(np.float16),
              "scores": detector_outputs["scores"].astype(np.float16),
              "classes": detector_outputs["classes"].astype(np.float32),
              "num_detections": detector_outputs["num_detections"].astype(np.float32).reshape(-1, 1)}
    expected = _numpy_objects(halved, thresholds, (64, 64))
    assert expected and _parse(parser, halved, thresholds, (64, 64), tmp_path) == expected


def test_boxes_are_clipped_to_the_network_and_classes_past_the_configured_count_dropped(parser, detector_outputs,
                                                                                        tmp_path):
    moved = dict(detector_outputs)
    moved["boxes"] = (detector_outputs["boxes"] * np.float32(1.6) - np.float32(20)).astype(np.float32)
    thresholds = np.zeros(5, np.float32)  # num-detected-classes=5: classes 5-9 are not nvinfer's to receive
    expected = _numpy_objects(moved, thresholds, (64, 64))
    clipped = [o for o in expected if o[2] == 0 or o[3] == 0 or o[2] + o[4] == 64 or o[3] + o[5] == 64]
    assert clipped and _parse(parser, moved, thresholds, (64, 64), tmp_path) == expected
    packed = pack_detections(*[moved[name] for name in DETECTION_OUTPUTS])
    inside = (packed[..., 5] >= 0) & (packed[..., 5] < 5)
    assert len(expected) < inside.sum()  # boxes wholly outside the input were dropped, not squashed to a line


def test_a_frame_with_no_detections_and_rows_past_the_count_give_nothing(parser, detector_outputs, tmp_path):
    emptied = dict(detector_outputs)
    emptied["num_detections"] = np.array([0] + [1] * (len(detector_outputs["scores"]) - 1), np.int32)
    objects = _parse(parser, emptied, np.zeros(10, np.float32), (64, 64), tmp_path)
    assert [o[0] for o in objects] == list(range(1, len(detector_outputs["scores"])))  # the first row of each frame
    assert objects == _numpy_objects(emptied, np.zeros(10, np.float32), (64, 64))


def test_a_missing_output_or_an_unreadable_dtype_fails_the_frame(parser, detector_outputs, tmp_path):
    failed = _parse(parser, detector_outputs, np.zeros(10, np.float32), (64, 64), tmp_path,
                    names=("boxes", "scores", "classes"))
    assert "frame 0 failed" in failed and "set output-blob-names=boxes;scores;classes;num_detections" in failed
    int8 = dict(detector_outputs, classes=detector_outputs["classes"].astype(np.int8))
    failed = _parse(parser, int8, np.zeros(10, np.float32), (64, 64), tmp_path)
    assert "output 'classes' has data type 2; expected FLOAT, HALF or INT32" in failed
