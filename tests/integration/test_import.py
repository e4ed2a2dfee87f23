"""`edgepipe import` end to end (issue 28): detectors trained elsewhere in each YOLO layout and a torchvision
classifier trained by a plain script, imported through the CLI, quantized, evaluated, bundled and run by the device
runtime; every number is against the imported original on the user's own test split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.foreign_models import AsEndToEnd, AsYoloV5, AsYoloV8, export_plain
from PIL import Image
from typer.testing import CliRunner

from edgepipe.cli.main import app

pytestmark = pytest.mark.integration

SIZE = 64
CANVAS = {"name": "mnist-canvas", "canvases": 1200, "image_size": [SIZE, SIZE], "split_seed": 0}
CENTERNET = {
    "name": "canvas-centernet", "task": "detection", "target": "jetson-orin-nano",
    "model": {"name": "centernet", "params": {"width": 12}},
    "dataset": CANVAS,
    "train": {"optimizer": "adamw", "lr": 0.003, "schedule": "onecycle", "epochs": 10, "batch_size": 32},
}
LAYOUTS = {"yolov8": AsYoloV8, "yolov5": AsYoloV5, "yolo-end2end": AsEndToEnd}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # edgepipe.data.mnist's, what mnist-canvas trains on
INT8_FLOOR = 1.0  # mAP@0.5 points against the imported original (issue 28's floor)


def edgepipe(*args: str) -> str:
    """`edgepipe ARGS` in this process (typer's CliRunner); its output, asserting exit code 0."""
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def workstation_eval(run: Path) -> dict[str, dict]:
    """`edgepipe eval RUN --json`: {artifact name: its row}."""
    report = json.loads(edgepipe("eval", run, "--json", "--max-drop", "100"))  # scores, not the budget's verdict
    return {row["name"]: row for row in report["artifacts"]}


def device_eval(bundle: Path, tmp: Path) -> dict[str, dict]:
    """`python BUNDLE/edgepipe_device.py eval BUNDLE` in a child process where torch cannot be imported."""
    blocker = tmp / "no-torch" / "torch"
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text("raise ImportError('PyTorch is not installed on this device')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent), "EDGEPIPE_NO_PROGRESS": "1"}
    out = tmp / "device-eval.json"
    done = subprocess.run([sys.executable, str(bundle / "edgepipe_device.py"), "eval", str(bundle), "--json",
                           str(out)], env=env, capture_output=True, text=True, cwd=tmp, timeout=600)
    assert done.returncode in (0, 1) and out.is_file(), done.stdout + done.stderr  # 1: an artifact over budget
    return {row["name"]: row for row in json.loads(out.read_text())["artifacts"]}


def write_yolo_folder(root: Path) -> Path:
    """mnist-canvas (the same canvases and boxes as ``dataset.name: mnist-canvas``) as a user's YOLO folder:
    images/{train,val,test}/*.png (8-bit grey), labels/ (class cx cy w h, normalized), data.yaml with the names.
    As in benchmarks/ultralytics_import.py."""
    from edgepipe.data.canvas import SPLIT_NAMES, _build
    from edgepipe.recipe import DatasetConfig

    built = _build(DatasetConfig(**CANVAS))
    for split in SPLIT_NAMES:
        images, targets, _ = built[split]
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        height, width = images.shape[-2:]
        for index, (image, rows) in enumerate(zip(images, targets, strict=True)):
            stem = f"{split}_{index:05d}"
            Image.fromarray(np.round(image[0] * 255).astype(np.uint8)).save(root / "images" / split / f"{stem}.png")
            lines = [f"{int(c)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
                     f"{(y2 - y1) / height:.6f}\n" for x1, y1, x2, y2, c in rows.tolist() if c >= 0]
            (root / "labels" / split / f"{stem}.txt").write_text("".join(lines))
    names = "".join(f"  {digit}: '{digit}'\n" for digit in range(10))
    (root / "data.yaml").write_text(f"train: images/train\nval: images/val\ntest: images/test\nnames:\n{names}")
    return root


@pytest.fixture(scope="module")
def trained_centernet(tmp_path_factory):
    """A CenterNet trained briefly by edgepipe's own train stage: (its test mAP@0.5, the model, a YOLO folder)."""
    from edgepipe.artifacts import read_manifest
    from edgepipe.checkpoint import load_model
    from edgepipe.recipe import load_recipe
    from edgepipe.stages.train import train

    root = tmp_path_factory.mktemp("import-detector")
    (root / "centernet.yaml").write_text(yaml.safe_dump(CENTERNET))
    train(load_recipe(root / "centernet.yaml"), root / "train")
    model, _ = load_model(root / "train")
    own_map = read_manifest(root / "train").metrics["test"]
    return own_map, model, write_yolo_folder(root / "canvas-yolo"), root


@pytest.fixture(scope="module")
def imported_detectors(trained_centernet):
    """{layout: run} for each YOLO layout: exported by plain torch.onnx.export, imported, quantized, bundled."""
    _, model, data, root = trained_centernet
    runs = {}
    for layout, wrapper in LAYOUTS.items():
        onnx_file = export_plain(wrapper(model), root / f"{layout}.onnx", (SIZE, SIZE), channels=1)
        run = root / f"run-{layout}"
        # the CenterNet was trained on MNIST-normalized pixels: the user declares that preprocessing
        edgepipe("import", onnx_file, "--data", data, "--out", run, "--outputs", layout, "--mean", MNIST_MEAN,
                 "--std", MNIST_STD)
        runs[layout] = run
    # the user's flow: the run's default budget (1 pt mAP@0.5 against the imported original), its accuracy fallback
    edgepipe("quantize", runs["yolov8"], "--no-cpu-speed-fallback")
    return runs


def test_each_layout_imports_with_the_centernets_own_map(trained_centernet, imported_detectors):
    from edgepipe.artifacts import read_manifest

    own_map = trained_centernet[0]
    assert own_map >= 0.5, own_map  # a real detector, so the comparisons below mean something
    for layout, run in imported_detectors.items():
        manifest = read_manifest(run / "import")
        assert manifest.model["outputs"] == layout and manifest.model["origin"] == "onnx"
        # the same maps, decoded by the appended graph instead of edgepipe's own decode (3x3 peaks, no NMS)
        assert abs(manifest.metrics["test"] - own_map) <= 0.05, (layout, manifest.metrics["test"], own_map)


def test_int8_tracks_stay_within_a_point_of_the_imported_yolov8(imported_detectors):
    from edgepipe.artifacts import read_manifest

    rows = workstation_eval(imported_detectors["yolov8"])
    quantized = read_manifest(imported_detectors["yolov8"] / "quantize").metrics["artifacts"]
    shipped = {row["name"]: row for row in quantized}
    original = rows["original"]["score"]
    for name in ("int8-cpu", "int8-trt"):
        drop = (original - rows[name]["score"]) * 100
        assert drop <= INT8_FLOOR, (name, rows[name]["score"], original)
        # INT8 indeed, not a float graph the fallback relabelled (measured: 12 of 14 layers, 99.1 % of the MACs)
        assert shipped[name]["int8"]["mac_fraction"] >= 0.5, shipped[name]["int8"]


def test_the_device_runtime_scores_every_artifact_as_the_workstation(imported_detectors, tmp_path):
    run = imported_detectors["yolov8"]
    bundle = tmp_path / "bundle"
    edgepipe("bundle", run, "--target", "jetson-orin-nano", "--out", bundle)
    workstation = workstation_eval(run)
    device = device_eval(bundle, tmp_path)
    shared = set(workstation) & set(device)
    assert {"original", "int8-trt"} <= shared, (sorted(workstation), sorted(device))
    for name in shared:
        assert device[name]["score"] == pytest.approx(workstation[name]["score"], abs=1e-4), name


def test_infer_draws_boxes_mapped_back_to_the_original_images(trained_centernet, imported_detectors, tmp_path):
    """Test canvases enlarged 2x (128x128) and cut to 128 wide x 96 tall: letterbox scales by 0.5 and pads 8 px top
    and bottom, so the model sees canvas rows 8..56 at their own scale; every digit inside those rows must be found
    at its box in the *original* image's coordinates: x * 2, (y - 8) * 2."""
    from edgepipe.data.canvas import _build
    from edgepipe.recipe import DatasetConfig

    images, targets, _ = _build(DatasetConfig(**CANVAS))["test"]
    folder, drawn = tmp_path / "wide", tmp_path / "drawn"
    folder.mkdir()
    truth = {}
    for index in range(16):
        canvas = Image.fromarray(np.round(images[index, 0] * 255).astype(np.uint8)).resize((128, 128), Image.NEAREST)
        canvas.crop((0, 16, 128, 112)).save(folder / f"{index:02d}.png")
        truth[f"{index:02d}.png"] = [(x1 * 2, max(0, (y1 - 8) * 2), x2 * 2, min(96, (y2 - 8) * 2))
                                     for x1, y1, x2, y2, c in targets[index].tolist() if c >= 0 and y2 > 8 and y1 < 56]
    output = edgepipe("infer", imported_detectors["yolov8"], folder, "--draw", drawn, "--json", "--artifact",
                      "original")
    predictions = json.loads(output[output.index("{"):])["predictions"]
    # Localization, class-agnostic (this small detector confuses some digits and the grey pad costs it recall): a
    # box left in the model's 64-px input coordinates, or un-padded wrongly, would not land on a digit.
    shown = [(row, box) for row in predictions for box in row["detections"]]
    on_a_digit = sum(max((_iou(digit, box["box"]) for digit in truth[Path(row["file"]).name]), default=0) >= 0.5
                     for row, box in shown)
    assert len(shown) >= 5 and on_a_digit / len(shown) >= 0.8, (on_a_digit, len(shown))
    for row in predictions:
        if row["detections"]:  # the drawn PNG is the original image (enlarged by a whole factor), its box in colour
            drawn_image = np.asarray(Image.open(row["drawn"]).convert("RGB")).astype(int)
            factor = drawn_image.shape[1] // 128
            assert drawn_image.shape[:2] == (96 * factor, 128 * factor), drawn_image.shape
            x1, y1, x2, y2 = (round(v * factor) for v in row["detections"][0]["box"])
            edge = drawn_image[(y1 + y2) // 2, max(0, x1 - 3):x1 + 4]
            assert (np.ptp(edge, axis=1) > 40).any(), (row["file"], edge.tolist())


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# --- a torchvision classifier fine-tuned by the user's own plain script -------------------------------------------

SHAPES = ("circle", "square", "triangle", "bar")
COLOURS = ((220, 40, 40), (40, 200, 40), (40, 60, 220), (230, 210, 30))
PIXELS = 32  # resnet18 at 64 px took 2 minutes to train here on 2 shared cores; 32 px, a quarter of that
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def write_shapes_folder(root: Path, per_split: dict[str, int], seed: int = 0) -> Path:
    """train/ val/ test/ folders of 4 classes of coloured shapes on a noisy grey background (what a user has)."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    for split, count in per_split.items():
        for kind, colour in zip(SHAPES, COLOURS, strict=True):
            (root / split / kind).mkdir(parents=True)
            for index in range(count):
                image = Image.fromarray(rng.integers(80, 150, (PIXELS, PIXELS, 3), dtype=np.uint8))
                side = int(rng.integers(PIXELS // 4, PIXELS - 8))
                x, y = (int(v) for v in rng.integers(0, PIXELS - side, 2))
                draw, box = ImageDraw.Draw(image), (x, y, x + side, y + side)
                jitter = tuple(int(np.clip(c + rng.integers(-30, 30), 0, 255)) for c in colour)
                if kind == "circle":
                    draw.ellipse(box, fill=jitter)
                elif kind == "square":
                    draw.rectangle(box, fill=jitter)
                elif kind == "triangle":
                    draw.polygon([(x + side // 2, y), (x, y + side), (x + side, y + side)], fill=jitter)
                else:
                    draw.rectangle((x, y + side // 2 - 3, x + side, y + side // 2 + 3), fill=jitter)
                image.save(root / split / kind / f"{index:03d}.png")
    return root


def plain_training_script(folder: Path, out: Path) -> tuple[Path, Path]:
    """What a user's own script does (no edgepipe): torchvision resnet18, ImageNet normalization, a few epochs of
    Adam on train/; saves ``ft.pth`` (state_dict) and ``ft.onnx`` (torch.onnx.export, dynamic batch)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    images, labels = [], []
    for label, kind in enumerate(sorted(SHAPES)):  # torchvision's ImageFolder order: class folders sorted
        for file in sorted((folder / "train" / kind).glob("*.png")):
            pixels = np.asarray(Image.open(file).convert("RGB"), np.float32) / 255
            images.append(((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
            labels.append(label)
    x, y = torch.tensor(np.stack(images), dtype=torch.float32), torch.tensor(labels)
    model = torchvision.models.resnet18(num_classes=len(SHAPES))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(4):
        model.train()
        for batch in torch.randperm(len(x)).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    torch.save(model.state_dict(), out / "ft.pth")
    torch.onnx.export(model, (torch.zeros(1, 3, PIXELS, PIXELS),), str(out / "ft.onnx"), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return out / "ft.pth", out / "ft.onnx"


@pytest.fixture(scope="module")
def classifier_runs(tmp_path_factory):
    """The same fine-tuned classifier imported from its state dict and from its ONNX file, both quantized."""
    root = tmp_path_factory.mktemp("import-classifier")
    folder = write_shapes_folder(root / "shapes", {"train": 60, "val": 25, "test": 25})
    weights, onnx_file = plain_training_script(folder, root)
    same_view = ["--data", folder, "--image-size", PIXELS, PIXELS, "--resize-mode", "stretch"]
    edgepipe("import", "torchvision:resnet18", "--weights", weights, "--out", root / "from-weights", *same_view)
    edgepipe("import", onnx_file, "--out", root / "from-onnx", *same_view)
    edgepipe("export", root / "from-weights")
    for run in ("from-weights", "from-onnx"):
        edgepipe("quantize", root / run, "--no-cpu-speed-fallback")
    return root / "from-weights", root / "from-onnx"


def test_both_imports_score_the_same_original(classifier_runs):
    from edgepipe.artifacts import read_manifest

    from_weights, from_onnx = (read_manifest(run / "import").metrics for run in classifier_runs)
    assert from_weights["test"] >= 0.8, from_weights  # it learned the shapes: the comparison is not of guesses
    for split in ("val", "test"):
        assert from_onnx[split] == pytest.approx(from_weights[split], abs=1e-6), split


def test_both_imports_agree_on_every_artifact(classifier_runs):
    weights_rows, onnx_rows = (workstation_eval(run) for run in classifier_runs)
    shared = set(weights_rows) & set(onnx_rows)
    assert {"original", "int8-cpu", "int8-trt"} <= shared, (sorted(weights_rows), sorted(onnx_rows))
    # The weights run's INT8 graphs come from edgepipe's own export, the ONNX run's from the user's graph: the same
    # weights and the same calibration images, but node names and folded constants may differ, so min/max ranges
    # can land one rounding step apart. Measured: identical on every artifact (0.95/0.94/0.95/0.95 both ways, 100
    # test images); one flipped image (0.01) is allowed for a rounding step, no more.
    for name in shared:
        assert abs(weights_rows[name]["score"] - onnx_rows[name]["score"]) <= 0.01 + 1e-9, (
            name, weights_rows[name]["score"], onnx_rows[name]["score"])


def test_export_and_prune_need_the_pytorch_origin(classifier_runs, tmp_path):
    from_weights, from_onnx = classifier_runs
    for args in (["export", from_onnx, "--out", tmp_path / "export"],
                 ["prune", from_onnx, "--ratio", "0.25", "--finetune-epochs", "0", "--out", tmp_path / "prune"]):
        result = CliRunner().invoke(app, [str(arg) for arg in args])
        assert result.exit_code == 2, (args, result.output)
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr
        assert not (tmp_path / args[0]).exists()
    edgepipe("prune", from_weights, "--ratio", "0.25", "--finetune-epochs", "0", "--out", tmp_path / "pruned")
    assert (tmp_path / "pruned" / "model.pt").is_file()
    assert (from_weights / "export" / "model.onnx").is_file()  # export worked in the fixture


def test_qat_runs_on_a_weights_origin_and_is_refused_on_an_onnx_one(classifier_runs, tmp_path):
    from edgepipe.artifacts import read_manifest

    from_weights, from_onnx = classifier_runs
    refused = CliRunner().invoke(app, ["quantize", str(from_onnx), "--qat", "--out", str(tmp_path / "qat-onnx")])
    assert refused.exit_code == 2, refused.output
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "PyTorch" in lines[0], refused.stderr
    assert not (tmp_path / "qat-onnx").exists()
    edgepipe("quantize", from_weights, "--qat", "--no-cpu-speed-fallback", "--out", tmp_path / "qat")
    qat = read_manifest(tmp_path / "qat").metrics["qat"]
    assert qat is not None and "recovered" in qat, qat
