"""Benchmark, run by hand: a detector trained and exported by ultralytics itself, the file issue 28's importer takes.

ultralytics (AGPL-3.0) is a benchmark/test dependency only, never a runtime one: this file imports it inside main(),
after checking it is installed, and skips in one line when it is not. Nothing is downloaded: no pretrained weights
(the model is built from ``yolov8n.yaml`` / ``yolo11n.yaml``, which ship inside the package), no hub, no pip
AutoUpdate, no fonts, no analytics; the data is mnist-canvas (edgepipe's own generator) written in YOLO format.

    pip install ultralytics            # beside edgepipe's own dependencies, in a dev venv
    python benchmarks/ultralytics_import.py --out /tmp/ultra                # yolov8n.yaml, 20 epochs, ~5 min
    python benchmarks/ultralytics_import.py --out /tmp/ultra --model yolo11n.yaml

Prints the ONNX path, its input and output (``images`` [N, 3, H, W] -> ``output0`` [N, 4 + C, A]: xywh in input
pixels and C sigmoid class scores, no objectness, A anchors over strides 8/16/32) and ultralytics' own mAP50 /
mAP50-95 (conf 0.001, IoU 0.7) of the trained model on val and test: as its logs report them (rect batches: a 96 px
image letterboxed into 128 px), at exactly imgsz (rect=False), and of the ONNX file on onnxruntime (rect=False).
Writes OUT/<model>-report.json with all of it (names, shapes, ONNX metadata, scores, timings).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

# ultralytics reads these when it is first imported (ONLINE, AUTOINSTALL, USER_CONFIG_DIR): set before the import.
OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",  # utils.is_online() -> False: no AutoUpdate, no PyPI version check, no analytics events
    "YOLO_AUTOINSTALL": "0",  # check_requirements() never runs pip; a missing package is a warning and False
}
# A from-scratch nano model on ~420 canvases: ultralytics' defaults spend the first max(3 epochs, 100 iterations)
# warming up and its mosaic shrinks 96 px digits further, so 5 epochs of them end at mAP 0. With these, mAP50 is
# about 0.5 on test after 20 epochs (4-5 minutes on 2 cores). Any of them can be overridden with --set.
TRAIN_DEFAULTS = {"optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": 0, "mosaic": 0.0}
SETTINGS_OFF = {"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False, "raytune": False,
                "tensorboard": False, "wandb": False, "api_key": "", "vscode_msg": False, "openvino_msg": False}


def write_dataset(root: Path, canvases: int, size: int, seed: int) -> Path:
    """mnist-canvas (edgepipe.data.canvas, the same canvases and boxes as `dataset.name: mnist-canvas`) written in
    YOLO format: images/{train,val,test}/*.png (8-bit grayscale), labels/{train,val,test}/*.txt (class cx cy w h,
    normalized), data.yaml with the ten digit names. Returns data.yaml."""
    import numpy as np
    from PIL import Image

    from edgepipe.data.canvas import SPLIT_NAMES, _build
    from edgepipe.recipe import DatasetConfig

    config = DatasetConfig(name="mnist-canvas", canvases=canvases, image_size=(size, size), split_seed=seed)
    built = _build(config)
    for split in SPLIT_NAMES:
        images, targets, _ = built[split]
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        height, width = images.shape[-2:]
        for index, (image, rows) in enumerate(zip(images, targets, strict=True)):
            stem = f"{split}_{index:05d}"
            pixels = np.round(image[0] * 255).astype(np.uint8)  # [H, W] uint8: an 8-bit grayscale PNG
            Image.fromarray(pixels).save(root / "images" / split / f"{stem}.png")
            lines = [f"{int(c)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
                     f"{(y2 - y1) / height:.6f}" for x1, y1, x2, y2, c in rows.tolist() if c >= 0]
            (root / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    data = root / "data.yaml"
    names = "\n".join(f"  {d}: '{d}'" for d in range(10))
    data.write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/val\ntest: images/test\n"
                    f"names:\n{names}\n")
    return data


def _offline_ultralytics(config_dir: Path):
    """Import ultralytics with every network path closed; returns the YOLO class."""
    os.environ.update(OFFLINE_ENV)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)  # settings.json and fonts here, not in ~/.config
    user_dir = config_dir / "Ultralytics"
    user_dir.mkdir(parents=True, exist_ok=True)
    # check_det_dataset() always calls check_font('Arial.ttf'), which otherwise asks GitHub for it (requests.head,
    # 3 s timeout, then a download): any local TTF under that name ends the search. matplotlib ships DejaVuSans.
    font = user_dir / "Arial.ttf"
    if not font.exists():
        import matplotlib

        shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font)
    from ultralytics import YOLO, settings

    settings.update(SETTINGS_OFF)
    return YOLO


def _onnx_io(path: Path, weights: Path, data: Path, size: int) -> dict:
    """The ONNX graph's input/output names and shapes, its outputs on real test images (batch 8) beside the PyTorch
    model's, and the value ranges of the box rows (0..3) and the class-score rows (4..)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    import yaml
    from PIL import Image

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    model = onnx.load(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spec = yaml.safe_load(data.read_text())
    files = sorted((Path(spec["path"]) / spec["test"]).glob("*.png"))[:8]
    # ultralytics' own preprocessing for a square image at its own size: RGB, /255, no mean/std (letterbox = identity)
    batch = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size)), np.float32).transpose(2, 0, 1)
                      for f in files]) / 255.0
    out = session.run(None, {session.get_inputs()[0].name: batch.astype(np.float32)})[0]
    from ultralytics.nn.tasks import load_checkpoint

    torch_model, _ = load_checkpoint(str(weights), device="cpu", fuse=True)
    with torch.no_grad():
        reference = torch_model.float().eval()(torch.from_numpy(batch.astype(np.float32)))
    reference = (reference[0] if isinstance(reference, (list, tuple)) else reference).numpy()
    return {"opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "inputs": [(i.name, dims(i)) for i in model.graph.input],
            "outputs": [(o.name, dims(o)) for o in model.graph.output],
            "output_shape_batch8": list(out.shape),
            "max_abs_diff_vs_torch": float(np.abs(out - reference).max()),
            "box_rows_range": [float(out[:, :4].min()), float(out[:, :4].max())],
            "class_rows_range": [float(out[:, 4:].min()), float(out[:, 4:].max())],
            "metadata": {p.key: p.value for p in model.metadata_props}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="dataset, runs, config and ONNX go here")
    parser.add_argument("--model", default="yolov8n.yaml",
                        help="an ultralytics model YAML: yolov8n.yaml, yolo11n.yaml")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--canvases", type=int, default=600, help="split 70/10/20 train/val/test")
    parser.add_argument("--imgsz", type=int, default=96, help="canvas size and training size (a multiple of 32)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="an existing YOLO data.yaml instead of writing mnist-canvas")
    parser.add_argument("--weights", type=Path, help="a trained best.pt: skip training, only score and export it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an ultralytics train argument (repeatable), e.g. --set lr0=0.002 --set mosaic=0")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("ultralytics") is None:
        print("ultralytics_import: skipped, ultralytics is not installed "
              "(pip install ultralytics; AGPL: benchmarks only)")
        return 0
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    data = args.data or write_dataset(out / "mnist-canvas-yolo", args.canvases, args.imgsz, args.seed)
    timings["dataset_s"] = round(time.perf_counter() - start, 1)

    import yaml

    YOLO = _offline_ultralytics(out / "config")
    name = Path(args.model).stem
    overrides = dict(TRAIN_DEFAULTS)
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    if args.weights:
        best = args.weights.resolve()
    else:
        model = YOLO(args.model)  # built from the packaged YAML: random weights, nothing loaded
        start = time.perf_counter()
        model.train(data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=0, device="cpu",
                    amp=False, plots=False, pretrained=False, seed=args.seed, deterministic=True,
                    project=str(out / "runs"), name=name, exist_ok=True, verbose=False, **overrides)
        timings["train_s"] = round(time.perf_counter() - start, 1)
        timings["per_epoch_s"] = round(timings["train_s"] / args.epochs, 1)
        best = Path(model.trainer.best)
    trained = YOLO(str(best))
    scores = {}

    def score(weights, split, rect):
        metrics = YOLO(str(weights)).val(data=str(data), split=split, imgsz=args.imgsz, batch=args.batch, workers=0,
                                         device="cpu", plots=False, rect=rect, project=str(out / "runs"),
                                         name=f"{name}-val", exist_ok=True, verbose=False)
        return {"mAP50": round(float(metrics.box.map50), 4), "mAP50-95": round(float(metrics.box.map), 4)}

    # ultralytics' default val (rect=True, pad 0.5) letterboxes a 96 px image into 128 px: what its logs report.
    # rect=False scores the image at imgsz exactly (letterbox = identity for a square image): the tensor an
    # importer feeds the ONNX file at its declared size.
    for split in ("val", "test"):
        scores[split] = score(best, split, rect=True)
    scores["test_rect_false"] = score(best, "test", rect=False)
    start = time.perf_counter()
    onnx_file = Path(trained.export(format="onnx", imgsz=args.imgsz, opset=args.opset, dynamic=True, simplify=False,
                                    device="cpu", batch=1))
    timings["export_s"] = round(time.perf_counter() - start, 1)
    scores["test_onnx_rect_false"] = score(onnx_file, "test", rect=False)  # onnxruntime, via ultralytics' val
    io = _onnx_io(onnx_file, best, Path(data), args.imgsz)
    report = {"model": args.model, "epochs": args.epochs, "train_overrides": overrides, "weights": str(best),
              "onnx": str(onnx_file), "data": str(data), **io, "scores": scores, "timings": timings}
    (out / f"{name}-report.json").write_text(json.dumps(report, indent=2))
    print(f"onnx: {onnx_file}")
    print(f"input: {io['inputs']}  output: {io['outputs']}  opset {io['opset']}")
    print(f"output on 8 test images at {args.imgsz}px: {io['output_shape_batch8']} (max |onnx - torch| "
          f"{io['max_abs_diff_vs_torch']:.2e}; box rows {io['box_rows_range']}, class rows {io['class_rows_range']})")
    for split, result in scores.items():
        print(f"{split}: mAP50 {result['mAP50']:.4f}  mAP50-95 {result['mAP50-95']:.4f}  (ultralytics' own val)")
    print(f"timings: {timings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
