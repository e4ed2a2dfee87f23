"""`edgepipe bundle`: what a Jetson without PyTorch needs to build an engine and check its accuracy loss.

BUNDLE/
  manifest.json   stage "bundle": target, every file with its sha256, the task and the original model's score,
                  labels and preprocessing
  README.md       the two commands to run on the device
  labels.txt      one class name per line
  reference.npz   x, y: the first N test samples; outputs: the original PyTorch model's outputs on them
  export/         model.onnx + manifest (the deployable FP32 graph: export-pruned/ when the run was pruned)
  quantize/       the ONNX files the target can build (FP16, INT8 QDQ), trt.calib.cache, manifest
  prune/          manifest only (`build --sparsity` reads the 2:4 method from it)
  edgepipe_device.py, edgepipe_device/
                  the device runtime (its launcher and its package): build / eval / infer / bench with TensorRT
                  + numpy only (Python 3.6+), so a Jetson needs no `pip install` at all
  deepstream/     detectors and classifiers: the C++ source and Makefile of the Gst-nvinfer parsers (bounding boxes;
                  softmax of a classifier's logits, named from labels.txt), built on the device against DeepStream's
                  headers; `edgepipe_device.py deepstream` writes the config that loads them

The layout mimics a run directory, so `edgepipe build BUNDLE` works unchanged, and `edgepipe eval BUNDLE`
compares the engines it made with the stored references: nothing on the device needs PyTorch.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe import diskspace
from edgepipe.artifacts import (
    MANIFEST,
    Artifact,
    Manifest,
    artifact_path,
    new_manifest,
    read_manifest,
    sha256_file,
    write_manifest,
)
from edgepipe.bundles import BundleFacts, is_bundle, load_reference
from edgepipe.data import Split, load_stage_dataset
from edgepipe.device.layout import (
    CLASSIFIER_PARSER_FUNCTION,
    DEEPSTREAM,
    DEEPSTREAM_TASKS,
    PARSER_FUNCTION,
    PARSER_LIBRARY,
    PARSER_SOURCES,
    PRECISIONS,  # best first
)
from edgepipe.errors import EdgepipeError
from edgepipe.progress import say
from edgepipe.run import BUNDLE as STAGE
from edgepipe.run import BUNDLE_README as README
from edgepipe.run import (
    CALIB_CACHE,
    DEVICE_LAUNCHER,
    DEVICE_PACKAGE,
    EXPORT,
    EXPORT_PRUNED,
    INT8_CPU_ONNX,
    INT8_TRT_ONNX,
    ORIGINAL,
    PRUNE,
    QUANTIZE,
    RunLayout,
)
from edgepipe.run import LABELS_TXT as LABELS
from edgepipe.run import REFERENCE_NPZ as REFERENCE
from edgepipe.stages.context import open_context
from edgepipe.stages.frame import StageFrame
from edgepipe.tasks import task_of

DEFAULT_SAMPLES = 500


@dataclass(frozen=True)
class _Planned:
    source: Path
    dest: str  # path inside the bundle
    precision: str | None  # what the preflight checks it for; None for non-ONNX files and the FP32 graph
    sha256: str  # what the source stage's manifest recorded: only that exact file is shipped


# --- making a bundle (on the workstation: torch runs the original model once) --------------------------------

def _onnx_entry(manifest: Manifest, directory: Path) -> Artifact:
    entry = manifest.find_artifact(fmt="onnx")
    if entry is None:
        raise EdgepipeError(f"{directory}: the export manifest lists no ONNX model; rerun `edgepipe export`")
    return entry


def _deployable_export(run_dir: Path, quantize_manifest: Manifest | None) -> Path:
    """The export dir to ship: the one quantize was made from, else export-pruned/ (the deployable model)."""
    candidates = RunLayout(run_dir).exports()
    if not candidates:
        raise EdgepipeError(f"no export/ stage in {run_dir}; run `edgepipe export {run_dir}` first")
    if not quantize_manifest:
        return candidates[0]
    quantized_from = set(quantize_manifest.parents.values())
    for candidate in candidates:
        entry = _onnx_entry(read_manifest(candidate), candidate)
        if sha256_file(candidate / entry.file) in quantized_from:
            return candidate
    raise EdgepipeError(f"{RunLayout(run_dir).quantize} was made from another model.onnx than "
                        f"{' or '.join(c.name + '/' for c in candidates)} holds; rerun `edgepipe quantize {run_dir}`")


def _quantize_files(quantize: Path, manifest: Manifest, precisions: frozenset[str]) -> tuple[
        list[_Planned], list[Artifact], list[dict[str, str]]]:
    """(files to ship, artifact entries to keep, files left out with the reason) of the quantize stage."""
    # Only what the manifest lists, with its hash: a file dropped into quantize/ by hand is never shipped.
    by_file = {entry.file: entry for entry in manifest.artifacts}
    planned, kept, excluded = [], [], []
    for name in sorted(by_file):
        entry = by_file[name]
        precision = entry.precision
        if (entry.model_extra or {}).get("track") == "cpu" or name == INT8_CPU_ONNX:
            excluded.append({"file": f"{QUANTIZE}/{name}", "reason": "onnxruntime CPU graph (u8s8); TensorRT builds "
                             "from the symmetric QDQ graph"})
        elif precision not in precisions:
            excluded.append({"file": f"{QUANTIZE}/{name}", "reason": f"{precision}: the target has no {precision}"})
        else:
            planned.append(_Planned(artifact_path(quantize, name), f"{QUANTIZE}/{name}", precision, entry.sha256))
            kept.append(entry)
    cache = manifest.extra("calibration_cache")
    if isinstance(cache, dict) and isinstance(cache.get("sha256"), str):
        if "int8" in precisions:
            planned.append(_Planned(artifact_path(quantize, cache.get("file")), f"{QUANTIZE}/{CALIB_CACHE}", None,
                                    cache["sha256"]))
        else:
            excluded.append({"file": f"{QUANTIZE}/{CALIB_CACHE}", "reason": "int8: the target has no int8"})
    return planned, kept, excluded


def _preflight(planned: list[_Planned], tmp: Path, profile) -> dict[str, list[dict]]:
    """check_onnx on every shipped ONNX for the target; errors refuse the bundle (one line, first error)."""
    from edgepipe.check import check_onnx

    findings: dict[str, list[dict]] = {}
    errors: list[tuple[_Planned, str]] = []
    for item in planned:
        if not item.dest.endswith(".onnx"):
            continue
        found = check_onnx(tmp / item.dest, profile, precision=item.precision)
        findings[item.dest] = [finding.to_dict() for finding in found if finding.severity != "info"]
        errors += [(item, finding.message) for finding in found if finding.severity == "error"]
    if errors:
        item, message = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise EdgepipeError(f"{profile.name} cannot build {item.dest}: {message}{more}; nothing was written; see "
                            f"`edgepipe check {item.source} --target {profile.name}`")
    return findings


def _deploy_precisions(profile, shipped: set[str]) -> list[str]:
    """Precisions `build` can make from the shipped files on this target, best first."""
    available = {"fp32"}
    if "fp16" in profile.precisions:  # FP16 flag on model.onnx (TensorRT < 11) or model.fp16.onnx
        available.add("fp16")
    if "int8" in profile.precisions and ({f"{QUANTIZE}/{INT8_TRT_ONNX}", f"{QUANTIZE}/{CALIB_CACHE}"} & shipped):
        available.add("int8")
    return [p for p in PRECISIONS if p in available]


def _trtexec(profile, shipped: set[str], precisions: list[str], export_manifest: Manifest,
             train_manifest: Manifest) -> list[dict[str, str]]:
    """trtexec command lines for every precision this bundle can build, per TensorRT family the target runs."""
    from edgepipe.onnx_export import INPUT_NAME
    from edgepipe.trt.settings import DEFAULT_BATCH, default_workspace_mib
    from edgepipe.trt.trtexec import BuildInput, DeviceFacts, trtexec_commands

    versions = [release.tensorrt for release in profile.releases] or [profile.tensorrt_min, profile.tensorrt_max]
    model_input = BuildInput((export_manifest.extra("onnx") or {}).get("input", INPUT_NAME),
                             tuple(train_manifest.model["input_shape"]), DEFAULT_BATCH)
    device = DeviceFacts(versions, default_workspace_mib(profile.memory_mib), profile.dla_cores)
    commands = trtexec_commands(shipped, precisions, model_input, device)
    return [command.to_json() for command in commands]


def _readme(manifest: dict[str, Any], bundle_name: str) -> str:
    target = manifest["target"]
    best = manifest["precisions"][0]
    original = manifest["original"]
    lines = [
        f"# edgepipe deploy bundle: {manifest['recipe_name']} for {target['name']}",
        "",
        f"Made for **{target['name']}** ({target['gpu']}, {target['sm']}, TensorRT {target['tensorrt']}"
        + (f", JetPack {', '.join(target['jetpack_releases'])}" if target.get("jetpack_releases") else "") + ").",
        f"Original model: {original['score_text']} on the {original['samples']} bundled test samples "
        f"({REFERENCE}, with its outputs as the reference).",
        "",
        "On the device: nothing to install beyond JetPack (TensorRT, CUDA, python3-numpy). The runtime in this bundle",
        "needs Python 3.6+, numpy and TensorRT 8.0-11.x only (no PyTorch, no pycuda, no pip install):",
        "",
        "```sh",
        f"python3 {bundle_name}/{DEVICE_LAUNCHER} build {bundle_name} --precision {best}",
        f"python3 {bundle_name}/{DEVICE_LAUNCHER} eval {bundle_name}     # exit 1 when over the budget",
        f"python3 {bundle_name}/{DEVICE_LAUNCHER} bench {bundle_name} --batch 1",
        f"python3 {bundle_name}/{DEVICE_LAUNCHER} infer {bundle_name} inputs.npy   # preprocessed N x "
        + " x ".join(str(d) for d in (manifest.get("model") or {}).get("input_shape", [])),
        "```",
        "",
        "Without TensorRT, `eval`, `infer` and `bench` run the bundle's ONNX files on onnxruntime (if installed) and "
        "say so; without TensorRT's Python bindings, `build` runs trtexec. With edgepipe installed, "
        f"`edgepipe build {bundle_name} --precision {best}` and `edgepipe eval {bundle_name}` do the same.",
        "",
        f"`build` writes {bundle_name}/build-{best}/model.{best}.engine; `eval` reports every engine's and ONNX "
        f"model's {manifest['task']['metric']} drop against the original model's stored outputs and exits 1 when one "
        f"is over the budget ({manifest['max_drop']} {manifest['task']['unit']}).",
        f"Precisions this bundle can build here: {', '.join(manifest['precisions'])}.",
        "",
        "Files (sha256 in manifest.json; `eval` names any file that is missing or changed):",
        "",
        *[f"- `{entry['path']}`" for entry in manifest["files"] if entry["path"] != README],
        "",
    ]
    if f"{DEEPSTREAM}/Makefile" in {entry["path"] for entry in manifest["files"]}:
        if manifest["task"]["name"] == "detection":
            how = ("detections come out of the engine after NMS; the config names "
                   f"`{DEEPSTREAM}/{PARSER_LIBRARY}` and `{PARSER_FUNCTION}`")
        else:
            how = (f"the config names `{DEEPSTREAM}/{PARSER_LIBRARY}` and `{CLASSIFIER_PARSER_FUNCTION}`, which "
                   "takes the softmax of the logits and attaches the argmax class from labels.txt when its "
                   "probability reaches classifier-threshold (0: always)")
        lines += ["DeepStream: after `build`, compile the parser library against the device's DeepStream, then "
                  f"write the Gst-nvinfer config that loads it ({how}):", "", "```sh",
                  f"make -C {bundle_name}/{DEEPSTREAM} DS_ROOT=/opt/nvidia/deepstream/deepstream CUDA_VER=11.4"
                  "   # your CUDA (/usr/local/cuda-<ver>)",
                  f"python3 {bundle_name}/{DEVICE_LAUNCHER} deepstream {bundle_name}"
                  "   # writes deepstream_nvinfer_<precision>.txt",
                  "```", ""]
    if manifest["excluded"]:
        lines += ["Left out for this target:", "", *[f"- `{e['file']}`: {e['reason']}" for e in manifest["excluded"]],
                  ""]
    if manifest.get("trtexec"):
        lines += ["Without TensorRT's Python bindings, trtexec builds the same engines (run them inside the bundle; "
                  f"`edgepipe infer {bundle_name}/model.{best}.engine IMAGES` runs the result; manifest.json lists "
                  "these for every TensorRT release the target runs):", "", "```sh"]
        lines += [f"# {c['precision']}, TensorRT {c['tensorrt']}: {c['how']}\n{c['command']}"
                  for c in manifest["trtexec"]]
        lines += ["```", ""]
    return "\n".join(lines)


# what ran the original when its reference outputs were recorded: PyTorch, or onnxruntime for an imported ONNX file
ORIGINAL_BACKENDS = {"torch": "torch", "onnx": "onnxruntime"}


def _reference_outputs(train_dir: Path, train_manifest: Manifest, samples: int):
    from edgepipe.runners.base import infer_in_batches
    from edgepipe.runners.select import open_runner

    original = train_manifest.find_artifact(name=ORIGINAL)
    if original is None:
        raise EdgepipeError(f"{train_dir}: the train manifest lists no '{ORIGINAL}' model")
    dataset = load_stage_dataset(train_manifest)
    count = min(samples, len(dataset.test))
    x, y = dataset.test.take(count), dataset.test.y[:count]
    with open_runner(train_dir, original) as runner:
        outputs = infer_in_batches(runner, x, 256).astype(np.float32)
    # labels stay integers; a detector's box targets keep their sub-pixel coordinates (a letterboxed box is fractional)
    y = y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float32)
    return np.ascontiguousarray(x, np.float32), y, outputs, original


def make_bundle(run_dir: Path, target: str, out: Path, *, samples: int = DEFAULT_SAMPLES) -> Path:
    """Bundle ``run_dir`` for ``target`` into ``out`` (see the module docstring); returns ``out``."""
    from edgepipe.targets import get_target

    profile = get_target(target)
    run_dir, out = Path(run_dir), Path(out)
    if samples < 1:
        raise EdgepipeError(f"--samples must be at least 1, got {samples}")
    if not run_dir.is_dir():
        raise EdgepipeError(f"{run_dir} is not a run directory; pass the directory `edgepipe pipeline` wrote")
    if is_bundle(run_dir):
        raise EdgepipeError(f"{run_dir} is already a deploy bundle; pass the run directory it was made from")
    if out.resolve() == run_dir.resolve():
        raise EdgepipeError(f"--out {out} is the run directory itself; pick a new directory for the bundle")
    frame = StageFrame(STAGE, out)
    layout = RunLayout(run_dir)
    train_dir = layout.require_origin()
    train_manifest = read_manifest(train_dir)
    quantize = layout.quantize
    quantize_manifest = read_manifest(quantize) if (quantize / MANIFEST).is_file() else None
    export_dir = _deployable_export(run_dir, quantize_manifest)
    export_manifest = read_manifest(export_dir)
    onnx_entry = _onnx_entry(export_manifest, export_dir)

    planned = [_Planned(artifact_path(export_dir, onnx_entry.file), f"{EXPORT}/{onnx_entry.file}", None,
                        onnx_entry.sha256)]
    kept_quantize: list[Artifact] = []
    excluded: list[dict[str, str]] = []
    if quantize_manifest is not None:
        planned_q, kept_quantize, excluded = _quantize_files(quantize, quantize_manifest, profile.precisions)
        planned += planned_q
    ship_prune = export_dir.name == EXPORT_PRUNED and layout.has(layout.prune)

    x, y, outputs, original = _reference_outputs(train_dir, train_manifest, samples)
    task = task_of(train_manifest)
    targets = task.targets(Split(x, y))
    score = task.score(outputs, targets)
    context = open_context(train_manifest, train_dir)  # the run's recipe and budget, read once
    dataset_record = train_manifest.dataset
    manifest = new_manifest(STAGE, {"target": profile.name, "samples": int(len(y)), "source": str(run_dir)},
                            {"original": original.sha256, "onnx": onnx_entry.sha256})

    def reloads(tmp: Path) -> None:  # check before trusting: every file hashes, the set reloads without pickle
        if not np.array_equal(load_reference(tmp).outputs, outputs):
            raise RuntimeError("reference.npz does not reload to the outputs written")

    diskspace.check_room(out.parent, f"the bundle {out.name}/", _bundle_bytes(planned, x, y, outputs))
    with frame.writing(manifest, check=reloads) as tmp:
        for item in planned:
            _copy_checked(item, tmp)
        preflight = _preflight(planned, tmp, profile)
        write_manifest(tmp / EXPORT, export_manifest)
        if quantize_manifest is not None:
            write_manifest(tmp / QUANTIZE, quantize_manifest.model_copy(update={"artifacts": kept_quantize}))
        if ship_prune:  # the pruned weights stay home: build only needs the method (2:4 or not)
            (tmp / PRUNE).mkdir()
            write_manifest(tmp / PRUNE, read_manifest(layout.prune).model_copy(update={"artifacts": []}))
        # x: inputs, y: labels (a reconstruction's targets are x itself), outputs: the original model's on them
        np.savez(tmp / REFERENCE, x=x, y=y, outputs=outputs)
        _copy_device_runtime(tmp)
        if task.name in DEEPSTREAM_TASKS:  # nvinfer reads boxes after NMS, and logits, only through a custom library
            _copy_deepstream_parser(tmp)
        (tmp / LABELS).write_text("\n".join(dataset_record.labels) + "\n")

        shipped = {item.dest for item in planned}
        manifest.recipe = train_manifest.recipe or {}  # as recorded: the device runtime reads it as JSON
        manifest.model = train_manifest.model
        manifest.task = task.describe()
        manifest.dataset = {"name": dataset_record.config["name"], "labels": dataset_record.labels,
                            "preprocessing": dataset_record.preprocessing or {},
                            "fingerprint": dataset_record.fingerprint, "samples": int(len(y))}
        precisions = _deploy_precisions(profile, shipped)
        facts = BundleFacts(
            recipe_name=context.name or run_dir.name,
            target={"name": profile.name, "gpu": profile.gpu, "sm": profile.sm,
                    "precisions": sorted(profile.precisions), "tensorrt_min": profile.tensorrt_min,
                    "tensorrt_max": profile.tensorrt_max, "jetpack": profile.jetpack,
                    "tensorrt": profile.tensorrt_text(),
                    "jetpack_releases": [release.jetpack for release in profile.releases]},
            precisions=precisions,
            max_drop=context.budget.max_drop,  # what eval gates the run with
            original={"score": score, "score_text": f"{task.format_score(score)} {task.metric_label}",
                      "samples": int(len(y)), "size_bytes": original.size_bytes,
                      "sha256": original.sha256, "backend": ORIGINAL_BACKENDS.get(original.format, original.format),
                      "reference_file": REFERENCE,
                      "test_score_full_split": train_manifest.metrics.get(
                          "test", train_manifest.metrics.get("test_accuracy"))},  # a train stage made before tasks
            excluded=excluded, preflight=preflight,
            trtexec=_trtexec(profile, shipped, precisions, export_manifest, train_manifest))
        facts.write_into(manifest)
        manifest.files = _file_list(tmp)
        (tmp / README).write_text(_readme(manifest.to_json(), out.name))
        manifest.files = _file_list(tmp)
    say(f"bundle: {out} for {profile.name} ({', '.join(facts.precisions)}; original "
        f"{facts.original['score_text']} on {len(y)} samples)")
    return out


def _bundle_bytes(planned: list[_Planned], *arrays: np.ndarray) -> int:
    """About what a bundle takes on disk: its files, its reference arrays, the device runtime, room for the rest."""
    from edgepipe import device

    runtime = sum(path.stat().st_size for path in Path(device.__file__).parent.rglob("*.py"))
    return sum(item.source.stat().st_size for item in planned) + sum(a.nbytes for a in arrays) + runtime + (64 << 10)


def _copy_device_runtime(bundle: Path) -> None:
    """The device runtime package (every module of edgepipe/device/, as edgepipe_device/) and its launcher, hashed in
    the file list like the rest."""
    from edgepipe import device

    source = Path(device.__file__).parent
    (bundle / DEVICE_PACKAGE).mkdir()
    for module in sorted(source.glob("*.py")):
        shutil.copyfile(module, bundle / DEVICE_PACKAGE / module.name)
    shutil.copyfile(source / "launcher.py", bundle / DEVICE_LAUNCHER)  # not imported: it runs main()


def _copy_deepstream_parser(bundle: Path) -> None:
    """The Gst-nvinfer parsers' source and Makefile (edgepipe/device/nvinfer_parser/) as BUNDLE/deepstream/: built on
    the device, where DeepStream's headers are; hashed in the file list like the rest."""
    from edgepipe import device

    source = Path(device.__file__).parent / PARSER_SOURCES
    (bundle / DEEPSTREAM).mkdir()
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name != PARSER_LIBRARY:  # a library built in the source tree stays there
            shutil.copyfile(path, bundle / DEEPSTREAM / path.name)


def _copy_checked(item: _Planned, bundle: Path) -> None:
    """Copy one planned file, then hash the copy: a bundle holds exactly the bytes its run's manifests record."""
    if not item.source.is_file():
        raise EdgepipeError(f"{item.source} is listed in its stage's manifest.json but missing; rerun that stage")
    destination = bundle / item.dest
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(item.source, destination)
    if sha256_file(destination) != item.sha256:
        raise EdgepipeError(f"{item.source} differs from what its stage's manifest.json records (sha256); it was "
                            "changed after the stage wrote it: rerun that stage. Nothing was written")


def _file_list(directory: Path) -> list[dict[str, Any]]:
    """Every file of the bundle but its own manifest.json, with size and sha256."""
    return [{"path": path.relative_to(directory).as_posix(), "sha256": sha256_file(path),
             "size_bytes": path.stat().st_size}
            for path in sorted(directory.rglob("*")) if path.is_file() and path != directory / MANIFEST]
