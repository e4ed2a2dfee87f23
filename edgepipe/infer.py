"""`edgepipe infer`: real image files through any artifact, with the preprocessing its manifests recorded.

    result = infer(Path("run"), [Path("digits/")], top_k=3)
    result["backend"], result["predictions"][0]["top"][0]["label"]

MODEL may be a run directory, a stage directory, a deploy bundle, an .onnx, an .engine or a model.pt.
A TensorRT engine runs on TensorRT when it is available here; otherwise the ONNX it was built from runs on
onnxruntime and the result says so. Nothing on the ONNX and engine paths imports torch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import MANIFEST, Artifact, Manifest, read_manifest
from edgepipe.bench.settings import Setting
from edgepipe.errors import EdgepipeError
from edgepipe.run import EXPORT, EXPORT_PRUNED, RunLayout, resolve
from edgepipe.runners.base import Runner
from edgepipe.tasks import Task, task_of

# What a directory runs when no --artifact is named: the deployable form first, the PyTorch original last.
_FORMAT_ORDER = {"engine": 0, "onnx": 1, "torch": 2}
_PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2}
_CHUNK = 256  # images decoded at a time


@dataclass
class Choice:
    """The model file to run, on which runner, and why (a fallback is said in ``note``)."""

    runner: Runner
    path: Path
    artifact: str
    note: str | None
    labels: list[str]
    preprocessing: dict[str, Any]
    task: Task


def _recorded(directory: Path) -> Manifest | None:
    """``directory``'s manifest when it records labels + preprocessing (a stage's dataset record, or a bundle's)."""
    if not (directory / MANIFEST).is_file():
        return None
    manifest = read_manifest(directory)
    record = manifest.dataset
    return manifest if record is not None and record.preprocessing is not None else None


def _find_dataset_record(model_dir: Path) -> Manifest:
    """The manifest with the model's dataset record and spec (its task): the model's own stage dir first, then its
    run dir / bundle and that run's train/ and export/ stages."""
    parent = model_dir.parent
    for directory in (model_dir, parent, RunLayout(parent).origin, parent / EXPORT, parent / EXPORT_PRUNED):
        manifest = _recorded(directory)
        if manifest is not None:
            return manifest
    raise EdgepipeError(f"no preprocessing recorded for the model in {model_dir} (no manifest with a dataset "
                        "record beside it or in its run directory); pass the run directory, stage or bundle")


def _directory_artifacts(source) -> list[tuple[Path, Artifact]]:
    if source.kind == "stage":
        stages = [source.directory]
    else:
        if source.kind == "bundle":
            from edgepipe.bundles import read_bundle

            read_bundle(source.directory)  # names a missing or changed file
        stages = RunLayout(source.directory).stage_dirs()
    return [(stage, entry) for stage in stages for entry in read_manifest(stage).artifacts]


def _pick(directory: Path, artifacts: list[tuple[Path, Artifact]], name: str | None,
          trt_ok: bool) -> tuple[Path, Artifact]:
    if name is not None:
        for stage, entry in artifacts:
            if entry.name == name:
                return stage, entry
        known = ", ".join(entry.name for _, entry in artifacts) or "none"
        raise EdgepipeError(f"no artifact named {name!r} in {directory}; its artifacts: {known}")
    usable = [(s, e) for s, e in artifacts if e.format in _FORMAT_ORDER]
    if not trt_ok:  # an engine would fall back to its ONNX anyway: say that by picking the ONNX directly
        usable = [(s, e) for s, e in usable if e.format != "engine"] or usable
    if not usable:
        raise EdgepipeError(f"{directory} holds no model to run (no artifacts in its manifests); "
                            "pass a run directory, stage directory, bundle, .onnx, .engine or model.pt")
    # engine > onnx > torch; among ONNX the FP32 graph (what the original exports to), among engines the fastest;
    # between the two FP32 exports the pruned one (the deployable model, what quantize and bundle use)
    return min(usable, key=lambda item: (_FORMAT_ORDER[item[1].format],
                                         _PRECISION_ORDER.get(item[1].precision, 9)
                                         * (-1 if item[1].format == "engine" else 1),
                                         item[0].name != EXPORT_PRUNED))


def _bench_pick(directory: Path, artifacts: list[tuple[Path, Artifact]], batch: int
                ) -> tuple[Path, Artifact, str, Setting | None, str | None] | None:
    """The CPU (artifact, runtime) pair bench picked for this run (report.json), when that artifact is here: its
    stage, entry, the runtime to run it on here, the runtime setting bench measured fastest for it at the benched
    batch closest to ``batch`` (None unless a setting other than the full thread budget won there), and the
    backend bench named."""
    from edgepipe.report import read_report
    from edgepipe.runners.select import installed_cpu_runtimes

    try:
        bench = read_report(directory).get("bench") or {}
    except EdgepipeError:
        return None  # an unreadable report: infer's own rule still picks
    pick = (bench.get("deployable") or {}).get("cpu") or {}
    found = next(((s, e) for s, e in artifacts if e.name == pick.get("name")), None)
    if found is None or found[1].format not in ("onnx", "torch"):
        return None
    backend = pick.get("backend")
    runtime = backend if found[1].format == "onnx" and backend in installed_cpu_runtimes() else None
    setting = None
    rows = [r for r in bench.get("rows") or [] if isinstance(r, dict) and type(r.get("batch")) is int
            and (r.get("name"), r.get("backend")) == (pick.get("name"), backend)]
    if runtime and rows:
        closest = min(rows, key=lambda r: (abs(r["batch"] - batch), r["batch"]))
        setting = Setting.from_json(closest.get("setting")) if closest.get("setting_tuned") is True else None
    return (found[0], found[1], runtime or ("onnxruntime" if found[1].format == "onnx" else "torch"), setting,
            backend if isinstance(backend, str) else None)


def choose(model: Path, *, artifact: str | None = None, threads: int | None = None, batch: int = 1) -> Choice:
    """Resolve MODEL (file or directory) to a runner, the file it runs, and the recorded preprocessing.

    A directory with no usable engine runs what bench picked for the CPU (the fastest within budget, on the
    runtime it was fastest on) when bench has run; else the pruned FP32 ONNX on onnxruntime."""
    from edgepipe.runners.select import runner_for_file, tensorrt_problem

    model = Path(model)
    if not model.exists():
        raise EdgepipeError(f"{model} does not exist; pass a run directory, stage, bundle, .onnx, .engine or .pt")
    source = resolve(model)
    fmt, note, runtime, setting = None, None, None, None
    if source.kind == "file":
        path, name = model, model.name
    else:
        problem = tensorrt_problem()
        artifacts = _directory_artifacts(source)
        stage, entry = _pick(model, artifacts, artifact, problem is None)
        path, fmt, name = stage / entry.file, entry.format, entry.name
        if problem is not None and artifact is None and any(e.format == "engine" for _, e in artifacts):
            note = f"TensorRT not available here ({problem}); ran the ONNX artifact {name} on onnxruntime instead"
        picked = (_bench_pick(source.directory, artifacts, batch) if artifact is None and entry.format != "engine"
                  else None)
        if picked is not None:
            stage, entry, runtime, setting, picked_on = picked
            path, fmt, name = stage / entry.file, entry.format, entry.name
            if threads is not None:  # the user's --threads wins over bench's measured setting
                setting = None
            how = f", {setting.label} (bench's fastest near batch {batch})" if setting else ""
            if picked_on in ("openvino",) and runtime != picked_on:
                note = (f"bench picked {name} on {picked_on}, which is not installed here; ran it on {runtime}"
                        + (f"; {note}" if note else ""))
            else:
                note = f"ran {name} on {runtime}{how}: bench's pick for this CPU (report.json)" + (
                    f"; {note}" if note else "")
    if setting is not None:
        from edgepipe.timing import available_cpus

        threads = min(setting.threads or available_cpus(), available_cpus())  # report.json is data: never more
    runner = runner_for_file(path, fmt, threads=threads, fallback=True,
                             runtime=runtime if runtime in ("openvino",) else None,
                             hint=setting.hint if setting else None)
    ran = runner.source or path
    manifest = _find_dataset_record(ran.parent)
    record = manifest.dataset
    return Choice(runner, ran, name, runner.note or note, list(record.labels), record.preprocessing or {},
                  task_of(manifest))


def collect_images(inputs: list[Path]) -> list[Path]:
    """Files as given, folders expanded to the image files inside them (sorted)."""
    from edgepipe.data.images import IMAGE_SUFFIXES, list_images

    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images = list_images(item)
            if not images:
                raise EdgepipeError(f"{item}: no image files in this folder "
                                    f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            found += images
        elif item.is_file():
            found.append(item)
        else:
            raise EdgepipeError(f"{item}: no such image file or folder")
    if not found:
        raise EdgepipeError("no images given; pass image files or a folder of images")
    return found


INFER_BATCH = 64  # images decoded and run per call: what a folder of photos costs in memory at 640 px


def infer(model: Path, inputs: list[Path], *, top_k: int = 5, artifact: str | None = None,
          threads: int | None = None, draw_to: Path | None = None) -> dict[str, Any]:
    """Predictions for image files: {"model", "artifact", "backend", "device", "note", "task", "predictions": [...]}:
    a classifier's top-k classes per image, an autoencoder's reconstruction PSNR per image, a detector's boxes (in
    the file's own pixels). ``draw_to``: a folder that receives each image with its boxes drawn (detection)."""
    from edgepipe.data.images import preprocess_files
    from edgepipe.runners.base import infer_in_batches

    if top_k < 1:
        raise EdgepipeError(f"--top-k must be at least 1, got {top_k}")
    images = collect_images(inputs)
    choice = choose(model, artifact=artifact, threads=threads, batch=max(1, min(INFER_BATCH, len(images))))
    if choice.preprocessing.get("kind") != "image":
        raise EdgepipeError(f"{choice.path} was trained on {choice.preprocessing.get('kind') or 'unknown'} inputs, "
                            "not images; `infer` reads image files only")
    predictions: list[dict[str, Any]] = []
    task = choice.task
    with choice.runner as runner:
        for start in range(0, len(images), _CHUNK):
            chunk = images[start:start + _CHUNK]
            batch = preprocess_files(chunk, choice.preprocessing)
            outputs = infer_in_batches(runner, batch, INFER_BATCH)
            said = task.predictions(outputs, batch, choice.labels, top_k)
            if task.name == "detection":
                said = [_in_source_pixels(prediction, path, choice.preprocessing)
                        for path, prediction in zip(chunk, said, strict=True)]
            predictions += [{"file": str(path), **prediction} for path, prediction in zip(chunk, said, strict=True)]
        backend, device = runner.backend, runner.device
    if draw_to is not None:
        if task.name != "detection":
            raise EdgepipeError(f"--draw shows boxes; {choice.path} is a {task.name} model")
        for prediction in predictions:
            prediction["drawn"] = str(draw_detections(Path(prediction["file"]), prediction["detections"],
                                                      Path(draw_to), choice.preprocessing))
    return {"model": str(model), "artifact": choice.artifact, "path": str(choice.path), "backend": backend,
            "device": device, "note": choice.note, "task": task.describe(), "predictions": predictions}


def _in_source_pixels(prediction: dict[str, Any], path: Path, preprocessing: dict[str, Any]) -> dict[str, Any]:
    """A detector's boxes moved from the model's input back onto the image file (the eval view inverted)."""
    from edgepipe.data.images import eval_view, open_image

    with open_image(path) as image:
        size = image.size
    view = eval_view(preprocessing)
    for detection in prediction["detections"]:
        detection["box"] = [round(float(v), 1) for v in view.to_source(np.array(detection["box"]), size)[0]]
    return prediction


def draw_detections(path: Path, detections: list[dict[str, Any]], folder: Path,
                    preprocessing: dict[str, Any]) -> Path:
    """``path`` with its detections drawn (box, label and score), written as ``folder``/<name>.png."""
    from PIL import ImageDraw, ImageFont

    from edgepipe.artifacts import write_bytes_atomic
    from edgepipe.data.images import decode

    image = decode(path, 3)
    if min(image.size) < 256:  # small inputs (a 96-px canvas) are enlarged so the labels stay legible
        factor = -(-256 // min(image.size))
        image = image.resize((image.width * factor, image.height * factor), resample=0)
    else:
        factor = 1
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=max(12, min(image.size) // 24))  # Pillow >= 10.1: a scalable font
    except TypeError:
        font = ImageFont.load_default()
    for detection in sorted(detections, key=lambda d: d["score"]):  # the most confident drawn last, on top
        colour = _PALETTE[detection["class"] % len(_PALETTE)]
        x1, y1, x2, y2 = (v * factor for v in detection["box"])
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=max(2, factor))
        caption = f"{detection['label']} {detection['score']:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        y = y1 - (bottom - top) - 4 if y1 >= bottom - top + 4 else y2 + 1  # above the box, else below it
        draw.rectangle([x1, y, x1 + right - left + 4, y + bottom - top + 4], fill=colour)
        draw.text((x1 + 2 - left, y + 2 - top), caption, fill=(0, 0, 0), font=font)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{path.stem}.png"
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_bytes_atomic(out, buffer.getvalue())
    return out


_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]
