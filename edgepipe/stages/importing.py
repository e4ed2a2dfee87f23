"""`edgepipe import MODEL`: a run whose original is a model trained elsewhere, judged on the user's own data.

RUN/import/ is the run's origin instead of train/, with the same manifest contract (model spec, dataset record,
recipe, val/test scores, the ``original`` artifact), so every later stage works on it as on a trained run:

- an ONNX file: ``model.onnx`` is the user's graph with its input pinned to the declared size and, for a YOLO
  layout, edgepipe's decode appended (foreign/decode.py); the original is scored on onnxruntime in FP32. Export and
  prune need PyTorch and refuse it in one line.
- trained weights (``torchvision:NAME`` / ``timm:NAME`` / a trusted callable + a state dict): ``model.pt`` in
  edgepipe's tensors-only format, rebuilt from the spec like a trained model, so export, prune and QAT work.

A model that scores at chance on the user's data is refused before anything is written: the data, its labels or
the declared preprocessing almost certainly do not match the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import add_artifact, new_manifest, sha256_file
from edgepipe.data import Dataset, load_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.progress import say
from edgepipe.recipe import Recipe, is_onnx_file, recipe_to_dict
from edgepipe.run import FP32_ONNX, IMPORT, MODEL_PT, ORIGINAL
from edgepipe.stages.frame import StageFrame
from edgepipe.tasks import Task, task_named


def import_model(recipe: Recipe, out: Path, *, reuse: bool = False) -> Path:
    """Make the origin stage ``out`` (RUN/import/) from the recipe's model trained elsewhere; returns ``out``."""
    frame = StageFrame(IMPORT, Path(out))
    if is_onnx_file(recipe.model.name):
        return _import_onnx(recipe, frame, reuse=reuse)
    return _import_weights(recipe, frame, reuse=reuse)


def _view_config(recipe: Recipe, size: tuple[int, int] | None, channels: int | None) -> Recipe:
    """The recipe with the dataset's view taken from the model where the user left it out."""
    update: dict[str, Any] = {}
    if size is not None and recipe.dataset.image_size is None:
        update["image_size"] = tuple(size)
    if channels is not None and recipe.dataset.channels is None:
        update["channels"] = channels
    if not update:
        return recipe
    dataset = recipe.dataset.model_copy(update=update)
    return recipe.model_copy(update={"dataset": type(recipe.dataset).model_validate(dataset.model_dump())})


def _import_onnx(recipe: Recipe, frame: StageFrame, *, reuse: bool) -> Path:
    from edgepipe.foreign.onnx_file import read_foreign_onnx

    source = Path(recipe.model.name).expanduser()
    spec, graph = read_foreign_onnx(source)
    size = spec.input_size(recipe.dataset.image_size)
    if spec.channels not in (None, 1, 3):
        raise EdgepipeError(f"{source.name}: input '{spec.input_name}' has {spec.channels} channels; images have 1 "
                            "or 3")
    recipe = _view_config(recipe, size, spec.channels)
    if recipe.dataset.channels is not None and spec.channels is not None and recipe.dataset.channels != spec.channels:
        raise EdgepipeError(f"{source.name} takes {spec.channels}-channel images, but dataset.channels is "
                            f"{recipe.dataset.channels}")
    dataset = load_dataset(recipe.dataset)
    task = task_named(recipe.task, dataset.preprocessing)
    config = _config(recipe)
    manifest = new_manifest(IMPORT, config, {"model": sha256_file(source), "dataset": dataset.fingerprint()})
    if frame.up_to_date(manifest, reuse=reuse):
        return frame.out

    graph = _pinned(graph, spec, size)
    if spec.static_batch is not None:  # calibration, eval and bench batch freely: free it, checked, or refuse
        from edgepipe.foreign.batch import make_batch_dynamic

        graph, rewritten = make_batch_dynamic(graph, spec.input_name, spec.static_batch,
                                              dataset.val.take(min(len(dataset.val), 2 * spec.static_batch)),
                                              source.name)
    layout = recipe.model.outputs or ("edgepipe" if recipe.task == "detection" else None)
    if recipe.task == "detection" and layout != "edgepipe":
        from edgepipe.foreign.decode import append_decode
        from edgepipe.models.yolo import YoloDecode

        params = recipe.model.params
        decode = YoloDecode(layout, dataset.num_classes, size, **{k: params[k] for k in (
            "nms_iou", "max_detections", "score_threshold") if k in params})
        graph = append_decode(graph, decode, raw_output=recipe.model.raw_output, name=source.name)
    import onnx

    with frame.writing(manifest) as tmp:
        onnx.save(graph, str(tmp / FP32_ONNX))
        _check_outputs(tmp / FP32_ONNX, task, dataset, source.name, layout)
        scores = _scores_onnx(tmp / FP32_ONNX, dataset, task, source.name)
        manifest.model = {"name": f"onnx:{source.name}", "origin": "onnx", "task": recipe.task,
                          "input_shape": [int(dataset.input_shape[0]), *size], "num_classes": dataset.num_classes,
                          "input_name": spec.input_name, "outputs": layout,
                          "static_batch": spec.static_batch, "source_sha256": manifest.parents["model"],
                          **({"reshapes_rewritten_for_batch": rewritten} if spec.static_batch else {})}
        _finish(manifest, tmp, recipe, dataset, {"metric": task.metric, **scores}, (FP32_ONNX, "onnx"))
    if spec.static_batch is not None:
        how = f" once {rewritten} Reshape target(s) copy the batch instead of fixing it" if rewritten else ""
        say(f"import: {source.name} was exported with a fixed batch of {spec.static_batch}; the run uses a dynamic "
            f"batch: checked at batch {2 * spec.static_batch} on val images, every output is the per-sample "
            f"original{how}")
    say(f"import: {source.name} ({recipe.task}{', ' + layout + ' outputs' if layout else ''}) at "
        f"{size[0]}x{size[1]}: {task.metric_label} val {task.format_score(scores['val'])}  test "
        f"{task.format_score(scores['test'])} on onnxruntime FP32 → {frame.out}")
    return frame.out


def _import_weights(recipe: Recipe, frame: StageFrame, *, reuse: bool) -> Path:
    import torch

    from edgepipe.checkpoint import load_model, save_state
    from edgepipe.models import build_model
    from edgepipe.models.backbones import read_weights
    from edgepipe.stages.train import model_spec
    from edgepipe.training import score

    if not recipe.model.trained:
        raise EdgepipeError(f"model '{recipe.model.name}' is not a model trained elsewhere: import takes an .onnx "
                            "file, or weights with model.trained: true (--weights)")
    weights = Path(recipe.model.weights).expanduser()
    dataset = load_dataset(recipe.dataset)
    task = task_named(recipe.task, dataset.preprocessing)
    manifest = new_manifest(IMPORT, _config(recipe), {"model": sha256_file(weights) if weights.is_file() else "",
                                                      "dataset": dataset.fingerprint()})
    if frame.up_to_date(manifest, reuse=reuse):
        return frame.out
    spec = model_spec(recipe, dataset)
    model = build_model(spec)
    state = read_weights(weights, recipe.model.name)
    target = model.state_dict()
    mismatched = sorted(k for k in state if k in target and target[k].shape != state[k].shape)
    missing = sorted(k for k in target if k not in state)
    unexpected = sorted(k for k in state if k not in target)
    if mismatched:
        key = mismatched[0]
        hint = (f"; the dataset has {dataset.num_classes} classes" if key.split(".")[-1] in ("weight", "bias")
                and target[key].shape[0] == dataset.num_classes else "")
        raise EdgepipeError(f"{weights.name}: tensor {key!r} is {tuple(state[key].shape)}, the model's is "
                            f"{tuple(target[key].shape)}{hint} (a class count different from the dataset's, or "
                            "another architecture)")
    if missing or unexpected:
        names = (missing or unexpected)[:3]
        raise EdgepipeError(f"{weights.name}: {len(missing)} of the model's tensors are missing and {len(unexpected)} "
                            f"are not the model's (e.g. {', '.join(names)}); is it '{recipe.model.name}' trained "
                            "with these classes?")
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()})
    model.eval()
    cpu = torch.device("cpu")
    scores = {"val": score(model, dataset.val, cpu, task), "test": score(model, dataset.test, cpu, task)}
    _refuse_at_chance(scores, model, dataset, task, weights.name)
    def reloads(tmp: Path) -> None:  # check before trusting: the saved file reproduces the score
        reloaded, _ = load_model(tmp)
        if abs(score(reloaded, dataset.val, cpu, task) - scores["val"]) > 1e-9:
            raise RuntimeError("the imported checkpoint does not reproduce its validation score")

    with frame.writing(manifest, check=reloads) as tmp:
        save_state({"model": {k: v.cpu() for k, v in model.state_dict().items()}}, tmp / MODEL_PT)
        manifest.model = {**spec, "origin": "weights", "source_sha256": manifest.parents["model"]}
        _finish(manifest, tmp, recipe, dataset, {"metric": task.metric, **scores}, (MODEL_PT, "torch"))
    say(f"import: {recipe.model.name} + {weights.name}: {task.metric_label} val {task.format_score(scores['val'])}  "
        f"test {task.format_score(scores['test'])} → {frame.out}")
    return frame.out


def _config(recipe: Recipe) -> dict[str, Any]:
    return {"model": recipe.model.model_dump(mode="json"), "dataset": recipe.dataset.model_dump(mode="json"),
            "task": recipe.task}


def _finish(manifest, tmp: Path, recipe: Recipe, dataset: Dataset, scores: dict[str, Any],
            original: tuple[str, str]) -> None:
    """The origin manifest's records, as train/ writes them; ``scores``: the metric's name and its val/test scores;
    ``original``: the model's (file, format)."""
    from edgepipe.stages.train import dataset_record

    manifest.dataset = dataset_record(recipe, dataset)
    manifest.recipe = recipe_to_dict(recipe)
    manifest.metrics = {**scores, "calibration_never_from": "test"}
    filename, fmt = original
    add_artifact(manifest, tmp, filename, name=ORIGINAL, fmt=fmt, precision="fp32")


def _pinned(graph, spec, size: tuple[int, int]):
    """The graph with its input's height and width fixed at the size it is imported at (TensorRT then builds a
    static-shape engine, and a YOLO export's anchor grid folds into constants); the batch axis stays as it is."""
    names = [value.name for value in graph.graph.input]
    tensor_type = graph.graph.input[names.index(spec.input_name)].type.tensor_type
    for axis, side in ((2, size[0]), (3, size[1])):
        tensor_type.shape.dim[axis].Clear()
        tensor_type.shape.dim[axis].dim_value = int(side)
    return graph


def _check_outputs(path: Path, task: Task, dataset: Dataset, name: str, layout: str | None) -> None:
    """The graph's outputs are what the task scores: a classifier's [N, classes], a detector's four outputs."""
    import onnx

    from edgepipe.device.scoring import DETECTION_OUTPUTS

    outputs = [value.name for value in onnx.load(str(path), load_external_data=False).graph.output]
    if task.name == "detection":
        if set(DETECTION_OUTPUTS) - set(outputs):
            raise EdgepipeError(f"{name}: outputs {', '.join(outputs)} are not edgepipe's detection outputs "
                                f"({', '.join(DETECTION_OUTPUTS)}); name its layout (--outputs yolov8|yolov5|"
                                "yolo-end2end)")
    elif len(outputs) != 1:
        raise EdgepipeError(f"{name}: a {task.name} model has one output; this one has {len(outputs)} "
                            f"({', '.join(outputs)})")


def _scores_onnx(path: Path, dataset: Dataset, task: Task, name: str) -> dict[str, float]:
    from edgepipe.runners.base import infer_in_batches
    from edgepipe.runners.onnxruntime import OrtRunner

    scores: dict[str, float] = {}
    with OrtRunner(path) as runner:
        for split_name in ("val", "test"):
            split = getattr(dataset, split_name)
            outputs = infer_in_batches(runner, split, 64)
            if task.name == "classification" and (outputs.ndim != 2 or outputs.shape[1] != dataset.num_classes):
                raise EdgepipeError(f"{name}: its output has shape {list(outputs.shape)}; the dataset has "
                                    f"{dataset.num_classes} classes ({', '.join(dataset.labels[:6])}"
                                    f"{', ...' if dataset.num_classes > 6 else ''}), so [N, {dataset.num_classes}] "
                                    "was expected")
            scores[split_name] = task.score(outputs, task.targets(split))
            if split_name == "val":
                _refuse_at_chance(scores, None, dataset, task, name, outputs=outputs)
    return scores


def _refuse_at_chance(scores: dict[str, float], model, dataset: Dataset, task: Task, name: str,
                      outputs: np.ndarray | None = None) -> None:
    """A model at chance on the user's val split: the data or the preprocessing is wrong, not the model; say so
    before anything is quantized against it."""
    if outputs is None:
        import torch

        from edgepipe.onnx_export import scored_outputs

        samples = dataset.val.take(min(len(dataset.val), 512))
        with torch.inference_mode():
            outputs = scored_outputs(model(torch.from_numpy(samples)))
        targets = task.targets(dataset.val)[:len(samples)]
    else:
        targets = task.targets(dataset.val)
    warning = task.degenerate(outputs, targets, dataset.labels)
    if warning:
        measured = warning.split(":")[0].removeprefix("test ")
        raise EdgepipeError(f"{name} is at chance on your val split ({measured}): the labels, their order or the "
                            "preprocessing (image_size, resize_mode, channel_order, mean/std) probably do not match "
                            "how it was trained; nothing imported")
