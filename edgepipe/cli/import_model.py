"""`edgepipe import MODEL --data DIR`: start a run from a model trained elsewhere (no training)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class Layout(str, Enum):
    edgepipe = "edgepipe"
    yolov5 = "yolov5"
    yolov8 = "yolov8"
    end2end = "yolo-end2end"


class ResizeMode(str, Enum):
    stretch = "stretch"
    crop = "crop"
    letterbox = "letterbox"


IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])  # torchvision's and timm's classifiers


def command(
    model: Annotated[str, typer.Argument(help="An .onnx file, or torchvision:NAME / timm:NAME / "
                                              "package.module:callable with --weights.")],
    data: Annotated[Path, typer.Option("--data", help="Your dataset: an image folder (classification), a COCO "
                                                      "folder (instances.json) or a YOLO folder (images/ labels/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The run directory to make (OUT/import/).")],
    weights: Annotated[Path | None, typer.Option(help="The trained state dict (.pth, .safetensors) of a PyTorch "
                                                      "model; never unpickled.")] = None,
    task: Annotated[str | None, typer.Option(help="classification or detection (default: from the dataset).")] = None,
    outputs: Annotated[Layout | None, typer.Option(help="A detector's output layout (default: read from the "
                                                        "output's shape).")] = None,
    image_size: Annotated[tuple[int, int] | None, typer.Option(help="H W the model was trained at (needed when the "
                                                                    "graph's height/width are dynamic).")] = None,
    resize_mode: Annotated[ResizeMode | None, typer.Option(help="How images reach that size (default: letterbox for "
                                                                "detectors, stretch for classifiers).")] = None,
    resize: Annotated[int | None, typer.Option(help="crop: the shorter side before the centre crop.")] = None,
    pad_value: Annotated[int, typer.Option(min=0, max=255, help="letterbox: the padding's grey level.")] = 114,
    channel_order: Annotated[str, typer.Option(help="RGB, or BGR for models trained on OpenCV's order.")] = "RGB",
    mean: Annotated[list[float] | None, typer.Option(help="Per-channel mean on the [0, 1] scale, once per channel "
                                                          "(default: 0 for detectors, ImageNet's for classifiers).")
                    ] = None,
    std: Annotated[list[float] | None, typer.Option(help="Per-channel std, as --mean.")] = None,
    names: Annotated[str | None, typer.Option(help="A YOLO folder's class names in index order: comma-separated, or "
                                                   "a file with one per line (darknet's .names); default: data.yaml's "
                                                   "names, else the class indices found.")] = None,
    target: Annotated[str | None, typer.Option(help="The device the run is for (see `edgepipe targets`).")] = None,
    max_drop: Annotated[float | None, typer.Option(min=0, help="The accuracy budget against your model.")] = None,
) -> None:
    """Start a run from a model trained elsewhere: the original is your model as given (an ONNX file scored on
    onnxruntime FP32, or PyTorch weights), judged on your data; then quantize, eval, bench and bundle it."""
    import yaml

    from edgepipe.errors import EdgepipeError
    from edgepipe.recipe import Recipe, is_onnx_file
    from edgepipe.run import RunLayout
    from edgepipe.rundir import check_run_out, run_lock
    from edgepipe.stages.importing import import_model

    if not is_onnx_file(model) and weights is None:
        raise EdgepipeError(f"{model}: import takes an .onnx file, or a model name with --weights FILE")
    if not data.is_dir():
        raise EdgepipeError(f"--data {data} is not a directory")
    kind = dataset_kind(data)
    task = task or ("detection" if kind in ("coco", "yolo") else "classification")
    detector = task == "detection"
    mode = resize_mode.value if resize_mode else ("letterbox" if detector else ("crop" if resize else "stretch"))
    channels = _onnx_channels(Path(model)) if is_onnx_file(model) else None
    default_mean, default_std = (IMAGENET if not detector and channels in (None, 3) else
                                 ([0.0] * (channels or 3), [1.0] * (channels or 3)))
    dataset = {"name": kind, "path": str(data), "resize_mode": mode, "pad_value": pad_value,
               "channel_order": channel_order,
               "mean": mean or default_mean, "std": std or default_std,
               **({"image_size": list(image_size)} if image_size else {}), **({"resize": resize} if resize else {}),
               **({"channels": channels} if channels else {}), **({"names": class_names(names)} if names else {})}
    model_section = {"name": model, **({"weights": str(weights), "trained": True} if weights else {})}
    if detector and is_onnx_file(model):
        model_section["outputs"] = outputs.value if outputs else detected_layout(Path(model), dataset)
    recipe = Recipe.model_validate({
        "name": out.name, "task": task, "target": target, "model": model_section, "dataset": dataset,
        **({"eval": {"max_drop": max_drop}} if max_drop is not None else {})})
    check_run_out(out)
    layout = RunLayout(out)
    made_out = not out.exists()
    try:
        with run_lock(out):
            import_model(recipe, layout.imported)
            layout.recipe_copy.write_text(yaml.safe_dump(recipe.model_dump(mode="json", exclude_defaults=True,
                                                                           by_alias=True), sort_keys=False))
    except BaseException:
        if made_out:  # a refused import leaves no run behind: only the lock file taking it made, if that
            _remove_if_only_lock(out)
        raise


def _remove_if_only_lock(out: Path) -> None:
    from edgepipe.rundir import LOCK

    if out.is_dir() and [p.name for p in out.iterdir()] in ([], [LOCK]):
        (out / LOCK).unlink(missing_ok=True)
        out.rmdir()


def _onnx_channels(path: Path) -> int | None:
    """The channels the graph's input takes (a grey detector has 1: its default mean/std have one value)."""
    from edgepipe.foreign.onnx_file import read_foreign_onnx

    spec, _ = read_foreign_onnx(path)
    return spec.channels


def class_names(names: str) -> list[str]:
    """--names: a file of one name per line (darknet's obj.names, ultralytics' classes.txt) or 'a,b,c'."""
    from edgepipe.errors import EdgepipeError

    file = Path(names).expanduser()
    if file.is_file():
        if file.stat().st_size > 1 << 20:  # class names are kilobytes; a megabyte is the wrong file
            raise EdgepipeError(f"--names {file}: {file.stat().st_size} bytes is not a list of class names")
        found = [line.strip() for line in file.read_text(encoding="utf-8", errors="replace").splitlines()]
    else:
        found = [name.strip() for name in names.split(",")]
    found = [name for name in found if name]
    if not found:
        raise EdgepipeError(f"--names {names!r}: no class name in it (give 'a,b,c' or a file of one name per line)")
    repeated = next((name for name in found if found.count(name) > 1), None)
    if repeated is not None:
        raise EdgepipeError(f"--names: {repeated!r} is listed twice; each class index needs its own name")
    return found


def dataset_kind(folder: Path) -> str:
    """yolo (data.yaml or images/ + labels/), coco (instances*.json), else an image folder of class folders."""
    if (folder / "data.yaml").is_file() or ((folder / "images").is_dir() and (folder / "labels").is_dir()):
        return "yolo"
    if any(folder.glob("instances*.json")):
        return "coco"
    return "imagefolder"


def detected_layout(path: Path, dataset: dict) -> str:
    """The layout a detector's single output has, read from its shape (said, so a user can override it)."""
    from edgepipe.errors import EdgepipeError
    from edgepipe.foreign.onnx_file import read_foreign_onnx
    from edgepipe.progress import say

    spec, _ = read_foreign_onnx(path)
    if len(spec.outputs) == 4:
        return "edgepipe"
    shape = next(iter(spec.outputs.values()))
    if len(spec.outputs) == 1 and len(shape) == 3:
        middle, last = shape[1], shape[2]
        guess = ("yolo-end2end" if last == 6 else "yolov8" if isinstance(last, str) or (
            isinstance(middle, int) and isinstance(last, int) and last > middle) else "yolov5")
        say(f"[dim]import: output {list(spec.outputs)[0]} {list(shape)} read as the {guess} layout "
            "(--outputs to say otherwise)[/dim]")
        return guess
    raise EdgepipeError(f"{path.name}: outputs {', '.join(spec.outputs)}: name the layout with --outputs")
