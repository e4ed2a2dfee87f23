"""The DeepStream parsers a bundle ships (deepstream/nvdsinfer_edgepipe.cpp), compiled here with the bundle's own
Makefile and called the way Gst-nvinfer calls them (dlopen, dlsym, once per frame with that frame's slice of each
output), on a real model's outputs:
- the bounding-box parser's objects must be exactly the numpy reading of a detector's outputs (the device runtime's
  pack_detections, the per-class threshold, boxes clipped to the network input);
- the classifier parser's attribute must be numpy's softmax argmax of a classifier's logits with its probability,
  named from the bundle's labels.txt, and only at or above classifier-threshold.

DeepStream itself is not installed here: tests/data/deepstream/nvdsinfer_custom_impl.h reproduces the struct layouts
and prototypes of DeepStream 6.0/6.1's nvdsinfer.h and nvdsinfer_custom_impl.h that the parsers use.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgepipe.device.layout import CLASSIFIER_PARSER_FUNCTION, DEEPSTREAM, LABELS_TXT, PARSER_FUNCTION, PARSER_LIBRARY
from edgepipe.device.scoring import DETECTION_OUTPUTS, pack_detections

REPO = Path(__file__).resolve().parents[2]
HEADERS = REPO / "tests" / "data" / "deepstream"
NV_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int8): 2, np.dtype(np.int32): 3}

pytestmark = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                                reason="no g++ or make here: the parser test compiles the C++ parser")


def _build(bundle: Path, root: Path) -> Path:
    """The parser library built by the bundle's Makefile in a copy of the bundle's deepstream/ and labels.txt
    (exactly what the device gets, laid out as in the bundle)."""
    shutil.copytree(bundle / DEEPSTREAM, root / DEEPSTREAM)
    shutil.copyfile(bundle / LABELS_TXT, root / LABELS_TXT)
    made = subprocess.run(["make", "-C", str(root / DEEPSTREAM), f"DS_INCLUDE={HEADERS}"], capture_output=True,
                          text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "warning" not in made.stdout + made.stderr
    return root / DEEPSTREAM / PARSER_LIBRARY


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    """The nvinfer-like driver (tests/data/deepstream/parse_driver.cpp)."""
    driver = tmp_path_factory.mktemp("driver") / "parse_driver"
    compiled = subprocess.run(["g++", "-std=c++11", "-O1", "-Wall", f"-I{HEADERS}", "-o", str(driver),
                               str(HEADERS / "parse_driver.cpp"), "-ldl"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    return driver


@pytest.fixture(scope="module")
def parser(tiny_detection_bundle, driver, tmp_path_factory) -> tuple[Path, Path]:
    """(the parser library built from the detection bundle, the nvinfer-like driver)."""
    return _build(tiny_detection_bundle, tmp_path_factory.mktemp("parser")), driver


def _layers(outputs, names, tmp_path):
    """The driver's NAME:DTYPE:DIMS:FILE arguments for ``outputs`` (one raw file per output)."""
    layers = []
    for name in names:
        array = np.ascontiguousarray(outputs[name])
        path = tmp_path / f"{name}.bin"
        array.tofile(path)
        dims = "x".join(str(d) for d in array.shape[1:]) or "-"  # one frame's dims: nvinfer drops the batch axis
        layers.append(f"{name}:{NV_DTYPES[array.dtype]}:{dims}:{path}")
    return layers


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
    frames = len(outputs[names[0]])
    result = subprocess.run([str(driver), "bbox", str(library), PARSER_FUNCTION, str(size[1]), str(size[0]),
                             str(len(thresholds)), ",".join(repr(float(t)) for t in thresholds), str(frames),
                             *_layers(outputs, names, tmp_path)], capture_output=True, text=True)
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


# --- the classifier parser: softmax of the logits, argmax, probability threshold ---------------------------------

@pytest.fixture(scope="module")
def classifier(tiny_classification_bundle, driver, tmp_path_factory) -> tuple[Path, Path]:
    """(the parser library built from the classification bundle, the nvinfer-like driver)."""
    return _build(tiny_classification_bundle, tmp_path_factory.mktemp("classifier")), driver


@pytest.fixture(scope="module")
def logits(tiny_classification_bundle) -> np.ndarray:
    """The bundle's model.onnx logits on its stored samples, as onnxruntime returns them (the engine's output)."""
    with np.load(tiny_classification_bundle / "reference.npz", allow_pickle=False) as data:
        x = data["x"]
    session = ort.InferenceSession(str(tiny_classification_bundle / "export" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (output,) = session.get_outputs()
    assert output.name == "logits"
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _classify(classifier, outputs, threshold, tmp_path, library=None):
    """([(frame, attributeIndex, attributeValue, attributeConfidence, label, description)], the driver's stderr), or
    all the driver printed when a frame failed."""
    built, driver = classifier
    names = list(outputs)
    result = subprocess.run([str(driver), "classifier", str(library or built), CLASSIFIER_PARSER_FUNCTION, "12", "12",
                             repr(float(threshold)), str(len(outputs[names[0]])), *_layers(outputs, names, tmp_path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return result.stdout + result.stderr
    rows = [line.split(" ", 4) for line in result.stdout.splitlines()]
    return [(int(r[0]), int(r[1]), int(r[2]), np.float32(r[3]), *r[4][1:-1].split("] [")) for r in rows], result.stderr


def _softmax_top1(logits):
    """numpy's reading: (argmax class, its softmax probability) per row, in float64 from the values as given."""
    values = logits.astype(np.float64)
    exp = np.exp(values - values.max(axis=1, keepdims=True))
    probabilities = exp / exp.sum(axis=1, keepdims=True)
    best = probabilities.argmax(axis=1)
    return best, probabilities[np.arange(len(values)), best]


def _check(attributes, logits, threshold, labels):
    best, probability = _softmax_top1(logits)
    kept = np.flatnonzero(probability >= threshold)
    assert [a[0] for a in attributes] == kept.tolist()  # one attribute per kept frame, none for the others
    for (_, index, value, confidence, label, description), row in zip(attributes, kept, strict=True):
        assert (index, value) == (0, best[row])  # the one output layer; numpy's argmax
        np.testing.assert_allclose(confidence, probability[row], rtol=1e-6)
        assert label == description == labels[best[row]]  # nvinfer attaches nothing without a description


def test_classifier_attributes_are_the_numpy_softmax_argmax_named_from_labels_txt(classifier, logits,
                                                                                  tiny_classification_bundle,
                                                                                  tmp_path):
    labels = (tiny_classification_bundle / LABELS_TXT).read_text().splitlines()
    assert logits.dtype == np.float32 and logits.shape == (64, len(labels))
    best, probability = _softmax_top1(logits)
    assert len(set(best.tolist())) > 1 and probability.min() < 0.9  # a real spread, not one saturated class
    attributes, warned = _classify(classifier, {"logits": logits}, 0.0, tmp_path)
    assert len(attributes) == len(logits) and not warned  # classifier-threshold=0: every frame's argmax
    _check(attributes, logits, 0.0, labels)
    # a threshold between two observed probabilities: exactly the frames at or above it, no boundary ties
    ordered = np.sort(probability)
    threshold = float((ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2)
    attributes, _ = _classify(classifier, {"logits": logits}, threshold, tmp_path)
    assert 0 < len(attributes) < len(logits)
    _check(attributes, logits, threshold, labels)
    attributes, _ = _classify(classifier, {"logits": logits}, 1.0, tmp_path)
    assert attributes == [] or all(a[3] == 1.0 for a in attributes)


def test_fp16_logits_and_chw_dims_read_the_same(classifier, logits, tiny_classification_bundle, tmp_path):
    """An FP16 engine may keep FP16 logits; a conv head may end in [C, 1, 1]."""
    labels = (tiny_classification_bundle / LABELS_TXT).read_text().splitlines()
    halved = (logits * np.float32(3)).astype(np.float16)  # sharper logits: the half rounding matters more
    attributes, _ = _classify(classifier, {"logits": halved.reshape(len(halved), -1, 1, 1)}, 0.5, tmp_path)
    assert attributes
    _check(attributes, halved, 0.5, labels)


def test_without_labels_txt_classes_are_named_by_number(classifier, logits, tmp_path):
    alone = tmp_path / "alone" / "lib"
    alone.mkdir(parents=True)
    shutil.copyfile(classifier[0], alone / PARSER_LIBRARY)  # no labels.txt beside it nor above it
    attributes, warned = _classify(classifier, {"logits": logits[:8]}, 0.0, tmp_path, library=alone / PARSER_LIBRARY)
    assert [a[4] for a in attributes] == [str(c) for c in _softmax_top1(logits[:8])[0]]
    assert "no labels.txt beside the library or in its parent directory" in warned


def test_two_outputs_or_integer_logits_fail_the_frame(classifier, logits, tmp_path):
    failed = _classify(classifier, {"logits": logits, "extra": logits}, 0.0, tmp_path)
    assert "frame 0 failed" in failed and "2 output layers; an edgepipe classifier has one" in failed
    failed = _classify(classifier, {"logits": logits.astype(np.int32)}, 0.0, tmp_path)
    assert "output 'logits' has data type 3; expected FLOAT or HALF logits" in failed
