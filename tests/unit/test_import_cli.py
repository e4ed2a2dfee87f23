"""`edgepipe import`'s bad input (issue 28's list), through typer's CliRunner: each is one line on stderr, exit code 2,
and nothing on disk changed (the out directory is never made; the model file and the dataset are untouched)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers.runs import snapshot
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw
from torch import nn
from typer.testing import CliRunner

from edgepipe.cli.main import app

COLOURS = {"circle": (220, 40, 40), "square": (40, 200, 40), "triangle": (40, 60, 220), "bar": (230, 210, 30)}


def _shape(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], colour) -> None:
    x1, y1, x2, y2 = box
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "triangle":
        draw.polygon([((x1 + x2) // 2, y1), (x1, y2), (x2, y2)], fill=colour)
    else:
        draw.rectangle((x1, (y1 + y2) // 2 - 2, x2, (y1 + y2) // 2 + 2), fill=colour)


def shapes_folder(root: Path, per_class: int = 10, size: int = 32, seed: int = 0) -> Path:
    """An image folder of 4 classes of coloured shapes on a grey, noisy background (PNG files)."""
    rng = np.random.default_rng(seed)
    for kind, colour in COLOURS.items():
        (root / kind).mkdir(parents=True)
        for index in range(per_class):
            background = rng.integers(90, 140, (size, size, 3), dtype=np.uint8)
            image = Image.fromarray(background)
            side = int(rng.integers(size // 3, size - 4))
            x, y = (int(v) for v in rng.integers(0, size - side, 2))
            _shape(ImageDraw.Draw(image), kind, (x, y, x + side, y + side), colour)
            image.save(root / kind / f"{index:03d}.png")
    return root


def yolo_folder(root: Path, classes: int = 3, images: int = 12, size: int = 32) -> Path:
    """A flat YOLO folder (images/ labels/ data.yaml) with one box per image."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index in range(images):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"{index}.png")
        (root / "labels" / f"{index}.txt").write_text(f"{index % classes} 0.5 0.5 0.4 0.4\n")
    names = "".join(f"  {i}: c{i}\n" for i in range(classes))
    (root / "data.yaml").write_text(f"names:\n{names}")
    return root


class TinyClassifier(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(8, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).flatten(1))


class DenseHead(nn.Module):
    """Raw [N, channels, A] (a YOLOv8-style output when channels = 4 + C), from a stride-8 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 8, stride=8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.conv(images)
        return out.flatten(2)


def export(module: nn.Module, path: Path, size=(32, 32), dynamic_hw: bool = False) -> Path:
    """What a user's script writes: torch.onnx.export (TorchScript), dynamic batch."""
    torch.manual_seed(0)
    module.eval()
    axes = {0: "batch", **({2: "height", 3: "width"} if dynamic_hw else {})}
    torch.onnx.export(module, (torch.zeros(1, 3, *size),), str(path), input_names=["images"],
                      output_names=["output0"], dynamic_axes={"images": axes, "output0": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("import-cli")
    torch.manual_seed(0)
    return {
        "shapes": shapes_folder(root / "shapes"),
        "yolo": yolo_folder(root / "yolo"),
        "seven": export(TinyClassifier(7), root / "seven.onnx"),
        "chance": export(TinyClassifier(4), root / "chance.onnx"),
        "dynamic": export(TinyClassifier(4), root / "dynamic.onnx", dynamic_hw=True),
        "yolov8-5cls": export(DenseHead(4 + 5), root / "yolov8-5cls.onnx"),
    }


def run_import(tmp_path: Path, *args: str, inputs: list[Path]):
    """`edgepipe import ARGS --out tmp/run`: the result, asserting nothing on disk changed."""
    out = tmp_path / "run"
    before = {str(path): snapshot(path) if path.is_dir() else path.read_bytes() for path in inputs}
    result = CliRunner().invoke(app, ["import", *args, "--out", str(out)])
    after = {str(path): snapshot(path) if path.is_dir() else path.read_bytes() for path in inputs}
    assert after == before
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))
    return result


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_file_that_is_not_onnx(tmp_path, files):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n not a protobuf at all" * 20)
    line = one_line_error(run_import(tmp_path, str(fake), "--data", str(files["shapes"]), inputs=[fake,
                                                                                                  files["shapes"]]))
    assert "not an ONNX model" in line


def test_external_data_outside_the_models_folder(tmp_path, files):
    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "outside.bin"
    secret.write_bytes(np.ones(4 * 3 * 3 * 3, np.float32).tobytes())
    weight = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "weight")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../outside.bin"), ("offset", "0"), ("length", str(4 * 27 * 4))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "weight"], ["conv"]),
         helper.make_node("ReduceMean", ["conv"], ["output0"], axes=[2, 3], keepdims=0)], "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4])], [weight])
    model = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    line = one_line_error(run_import(tmp_path, str(model), "--data", str(files["shapes"]),
                                     inputs=[folder, secret, files["shapes"]]))
    assert "outside.bin" in line and "external data" in line


def test_an_output_layout_that_is_not_the_declared_one_names_both_shapes(tmp_path, files):
    # a YOLOv8-style [N, 4 + 3, A] output declared as YOLOv5's [N, A, 5 + 3]
    model = export(DenseHead(4 + 3), tmp_path / "v8.onnx")
    line = one_line_error(run_import(tmp_path, str(model), "--data", str(files["yolo"]), "--outputs", "yolov5",
                                     inputs=[model, files["yolo"]]))
    assert "yolov5" in line and "expected [N, anchors, 5 + 3 classes]" in line and "found [1, 7, 16]" in line, line


def test_a_classifier_with_another_class_count_than_the_dataset(tmp_path, files):
    line = one_line_error(run_import(tmp_path, str(files["seven"]), "--data", str(files["shapes"]),
                                     inputs=[files["seven"], files["shapes"]]))
    assert "7" in line and "4 classes" in line, line


def test_a_yolov8_detector_with_another_class_count_than_the_dataset(tmp_path, files):
    model = files["yolov8-5cls"]  # 4 + 5 channels; the YOLO folder names 3 classes
    line = one_line_error(run_import(tmp_path, str(model), "--data", str(files["yolo"]), "--outputs", "yolov8",
                                     inputs=[model, files["yolo"]]))
    assert "3" in line and ("9" in line or "5" in line), line


def test_a_size_that_contradicts_a_static_input(tmp_path, files):
    line = one_line_error(run_import(tmp_path, str(files["seven"]), "--data", str(files["shapes"]),
                                     "--image-size", "48", "48", inputs=[files["seven"], files["shapes"]]))
    assert "32x32" in line and "48x48" in line, line


def test_dynamic_height_and_width_without_a_declared_size(tmp_path, files):
    line = one_line_error(run_import(tmp_path, str(files["dynamic"]), "--data", str(files["shapes"]),
                                     inputs=[files["dynamic"], files["shapes"]]))
    assert "dynamic height/width" in line and "--image-size" in line, line


@pytest.mark.parametrize("damage", ["renamed-text", "truncated-png"])
def test_a_dataset_whose_images_cannot_be_decoded(tmp_path, files, damage):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(files["shapes"], data)
    # every circle is damaged, so val and test (what import decodes) hold some; a damaged training image alone is
    # found by the header check (renamed text) or only when calibration decodes it (truncated pixels)
    for broken in sorted((data / "circle").glob("*.png")):
        if damage == "renamed-text":
            broken.write_text("this is a note, not a picture\n")
        else:  # a valid header, then the pixel stream stops
            broken.write_bytes(broken.read_bytes()[:80])
    line = one_line_error(run_import(tmp_path, str(files["chance"]), "--data", str(data),
                                     inputs=[files["chance"], data]))
    assert "circle" in line and ".png" in line, line


class Marker:
    """Unpickling this object writes MARKER (its __reduce__ is what a hostile full-pickle checkpoint runs)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_full_pickle_checkpoint_is_refused_and_never_unpickled(tmp_path, files):
    import torchvision

    marker = tmp_path / "unpickled.marker"
    model = torchvision.models.resnet18(num_classes=4)
    model.payload = Marker(marker)  # a whole module, pickled with an object that acts when loaded
    checkpoint = tmp_path / "full.pt"
    torch.save(model, checkpoint)
    assert not marker.exists()
    line = one_line_error(run_import(tmp_path, "torchvision:resnet18", "--weights", str(checkpoint), "--data",
                                     str(files["shapes"]), inputs=[checkpoint, files["shapes"]]))
    assert "full pickled model" in line and "never unpickles" in line, line
    assert not marker.exists()
    # the proof can fail: unpickling the same file for real does write the marker
    torch.load(checkpoint, weights_only=False)
    assert marker.exists()


def test_a_model_at_chance_on_the_users_data_is_refused_before_quantize(tmp_path, files):
    line = one_line_error(run_import(tmp_path, str(files["chance"]), "--data", str(files["shapes"]),
                                     inputs=[files["chance"], files["shapes"]]))
    assert "at chance" in line and "nothing imported" in line, line


def test_a_fixed_batch_the_graph_bakes_in(tmp_path, files):
    class FoldsBatchIntoClasses(TinyClassifier):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(images).flatten(1)).reshape(2, -1)  # [2, N * 2]: samples mixed

    model = tmp_path / "fixed.onnx"
    torch.onnx.export(FoldsBatchIntoClasses(4).eval(), (torch.zeros(1, 3, 32, 32),), str(model),
                      input_names=["images"], output_names=["output0"], opset_version=17, dynamo=False)
    line = one_line_error(run_import(tmp_path, str(model), "--data", str(files["shapes"]),
                                     inputs=[model, files["shapes"]]))
    assert "fixed batch of 1 that the graph bakes in" in line and "dynamic=True" in line, line


def test_names_come_comma_separated_or_from_a_darknet_names_file(tmp_path):
    from edgepipe.cli.import_model import class_names

    assert class_names("person, car,dog") == ["person", "car", "dog"]
    (tmp_path / "obj.names").write_text("person\ncar\n\ndog\n")
    assert class_names(str(tmp_path / "obj.names")) == ["person", "car", "dog"]


@pytest.mark.parametrize(("names", "message"), [(",", "no class name in it"), ("a,b,a", "'a' is listed twice")])
def test_names_that_name_nothing_or_twice(tmp_path, files, names, message):
    model = files["yolov8-5cls"]
    line = one_line_error(run_import(tmp_path, str(model), "--data", str(files["yolo"]), "--outputs", "yolov8",
                                     "--names", names, inputs=[model, files["yolo"]]))
    assert line.startswith("error: --names") and message in line, line


def test_declared_names_settle_the_class_count(tmp_path, files):
    """The folder's data.yaml names 3 classes and the model has 5: --names cannot contradict data.yaml either."""
    model = files["yolov8-5cls"]
    line = one_line_error(run_import(tmp_path, str(model), "--data", str(files["yolo"]), "--outputs", "yolov8",
                                     "--names", "a,b,c,d,e", inputs=[model, files["yolo"]]))
    assert "dataset.names lists 5 classes" in line and "names 3" in line, line
