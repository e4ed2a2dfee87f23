"""`edgepipe quantize`: one calibration run -> INT8 QDQ for TensorRT, INT8 QDQ u8s8 for the CPU, the TensorRT
calibration cache, and an FP16 graph; scored by the task on the val split, with a per-layer fallback.

RUN/quantize/
  model.int8.trt.onnx   int8 activations + weights, symmetric, zero-point 0, per-channel weights
  model.int8.cpu.onnx   uint8 activations, int8 per-channel weights (onnxruntime's fast CPU kernels)
  trt.calib.cache       the same per-tensor scales for TensorRT's implicit INT8 (8.x / 10.x)
  model.fp16.onnx       FP16 inside, FP32 inputs/outputs
  calibration.ranges.json  onnxruntime's calibrated tensor ranges (what all of the above came from)
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import (
    MANIFEST,
    Manifest,
    add_artifact,
    new_manifest,
    read_manifest,
    sha256_file,
    sha256_json,
)
from edgepipe.data import load_stage_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.progress import say
from edgepipe.quant.coverage import describe_coverage, int8_coverage
from edgepipe.quant.scoring import Judge, score_of
from edgepipe.recipe import QuantizeConfig
from edgepipe.report.results import QuantizedArtifact, QuantizeResult
from edgepipe.run import CALIB_CACHE as CACHE
from edgepipe.run import CALIB_RANGES as RANGES
from edgepipe.run import EXPORT, IMPORT, QUANTIZE, resolve
from edgepipe.run import FP16_ONNX as FP16
from edgepipe.run import INT8_CPU_ONNX as INT8_CPU
from edgepipe.run import INT8_TRT_ONNX as INT8_TRT
from edgepipe.rundir import scratch_dir
from edgepipe.stages.context import RunContext, open_context
from edgepipe.stages.frame import StageFrame
from edgepipe.tasks import Task
from edgepipe.timing import available_cpus


@dataclass
class QuantizeSource:
    onnx: Path
    manifest: Manifest | None  # the export stage's manifest (model spec, dataset record)
    stage_dir: Path | None

    def dataset(self):
        if self.manifest is None or self.manifest.dataset is None:
            return None
        if not hasattr(self, "_dataset"):
            self._dataset = load_stage_dataset(self.manifest)
        return self._dataset


def resolve_source(source: Path) -> QuantizeSource:
    """Run dir (export-pruned/ preferred: the deployable model), export stage dir, or an .onnx file."""
    found = resolve(source, files=(".onnx",))
    if found.kind == "file":
        return QuantizeSource(found.path, found.manifest, found.directory if found.manifest else None)
    candidates = [found.directory] if found.kind == "stage" else found.run.exports() if found.run else []
    for candidate in candidates:
        manifest = read_manifest(candidate)
        if manifest.stage in (EXPORT, IMPORT):
            onnx_entry = manifest.find_artifact(fmt="onnx")
            if onnx_entry is None:
                raise EdgepipeError(f"{candidate}: the export manifest lists no ONNX model")
            return QuantizeSource(candidate / onnx_entry.file, manifest, candidate)
    raise EdgepipeError(f"{source}: no export/ stage (or model.onnx) found; run `edgepipe export {source}` first")


def model_input(onnx_path: Path) -> tuple[str, tuple[int | None, ...]]:
    """The single input's name and shape; refuses a fixed batch axis (calibration and eval batch freely)."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:
        raise EdgepipeError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__})") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise EdgepipeError(f"{onnx_path}: quantize supports one model input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    if not shape or shape[0] is not None:
        raise EdgepipeError(f"{onnx_path}: input '{inputs[0].name}' has no dynamic batch axis (shape {shape}); "
                            "re-export with a dynamic batch (`edgepipe export` default)")
    return inputs[0].name, shape


def measure_speed(models: dict[str, Path], batch: np.ndarray, threads: int, runtime: str = "onnxruntime") -> dict:
    """Throughput of each model at one batch on ``runtime``, A/B rounds interleaved (the machine is shared)."""
    from edgepipe.quant.speed import timer_for

    rounds = timer_for(runtime, batch, threads, rounds=3, seconds=0.6)(models)
    p50s = {name: float(np.median(times)) for name, times in rounds.items()}
    return {name: {"batch": len(batch), "threads": threads, "runtime": runtime, "p50_ms": p50,
                   "rounds_ms": [round(t, 4) for t in rounds[name]],
                   "throughput_per_s": len(batch) / (p50 / 1000.0)} for name, p50 in p50s.items()}


def cpu_vnni() -> dict[str, Any]:
    from edgepipe.cache import read_cpuinfo

    flags = read_cpuinfo()[1]  # x86 "flags" or Arm "Features"
    if not flags:
        return {"known": False}
    return {"known": True, "avx512_vnni": "avx512_vnni" in flags, "avx_vnni": "avx_vnni" in flags,
            "vnni": bool({"avx512_vnni", "avx_vnni"} & flags)}


def _reusable_ranges(out: Path, ranges_key: str, scratch: Path) -> Path | None:
    """The previous run's calibration ranges, only when made from this very model + calibration set + method."""
    if not (out / MANIFEST).is_file() or not (out / RANGES).is_file():
        return None
    record = read_manifest(out).extra("calibration_cache") or {}
    if record.get("ranges_key") != ranges_key or sha256_file(out / RANGES) != record.get("ranges_sha256"):
        say("[dim]quantize: previous calibration is stale (other model, calibration set or method); recalibrating"
            "[/dim]")
        return None
    return Path(shutil.copyfile(out / RANGES, scratch / RANGES))


def quantize(source: Path, out: Path, config: QuantizeConfig | None = None, *, reuse: bool = False,
             speed: bool = True, context: RunContext | None = None) -> Path:
    """Quantize the run's deployable ONNX into ``out``; returns ``out``. ``speed=False`` skips the timing.

    The accuracy budget is the run's, against the original model (``context``: the pipeline's; else opened from
    the source's manifests): what the source already lost (a pruned model) is spent, and the fallbacks keep every
    INT8 graph within what is left. ``config.max_drop``, when set, is the whole budget instead of the recipe's."""
    from edgepipe.quant import fp16 as fp16_tools
    from edgepipe.quant.calibration import ArrayDataReader, load_calibration_set
    from edgepipe.quant.tracks import calibrate, check_trt_qdq, load_ranges, preprocess, tracks_for
    from edgepipe.trt import calib_cache as trt_cache

    config = config or QuantizeConfig()
    out = Path(out)
    frame = StageFrame(QUANTIZE, out)
    from edgepipe.quant.speed_fallback import SpeedProbe, cpu_float_where_faster, speed_runtimes

    runtimes = speed_runtimes(config.speed_runtime) if speed and config.cpu_speed_fallback else []
    src = resolve_source(source)
    input_name, input_shape = model_input(src.onnx)
    if config.qat:
        from edgepipe.quant.qat import torch_source

        torch_source(src)  # before minutes of calibration: --qat needs the PyTorch model of this ONNX
    dataset = src.dataset()
    if dataset is None:
        raise EdgepipeError(f"{src.onnx}: no edgepipe export manifest beside it, so there is no dataset to check "
                            "accuracy on; pass the run directory or export directory instead")
    # What the source already lost against the original (a pruned model) is read from the run's manifests, so the
    # pipeline and a lone `edgepipe quantize RUN` agree; the pipeline's context only spares re-reading the recipe.
    context = open_context(src.manifest, src.stage_dir, recipe=context.recipe if context else None,
                           max_drop=config.max_drop)
    task, budget = context.task, context.budget
    calibration_set = load_calibration_set(config.calibration, dataset_loader=lambda: dataset,
                                           preprocessing=src.manifest.dataset.preprocessing,
                                           input_shape=input_shape)
    model_sha = sha256_file(src.onnx)
    manifest_config = {**config.model_dump(mode="json"), "max_drop": budget.max_drop, "budget_spent": budget.spent}
    manifest = new_manifest(QUANTIZE, manifest_config, {"onnx": model_sha, "calibration_set": calibration_set.sha256})
    if frame.up_to_date(manifest, reuse=reuse):
        return out
    ranges_key = sha256_json({"model": model_sha, "calibration": calibration_set.sha256, "method": config.method,
                              "percentile": config.percentile if config.method == "percentile" else None})

    with frame.writing(manifest) as tmp, scratch_dir(out) as scratch:
        prepared = preprocess(src.onnx, scratch / "prepared.onnx")
        keep_float = _checked_node_names(prepared, config.keep_float, src.onnx)  # before minutes of calibration
        ranges_path = _reusable_ranges(out, ranges_key, scratch) if reuse else None
        if ranges_path is None:
            split = calibration_set.definition.get("split")
            say(f"quantize: calibrating ({config.method}) on {len(calibration_set)} samples"
                + (f" of the {split} split" if split else "") + f" ({calibration_set.name})")
            ranges = calibrate(prepared, ArrayDataReader(calibration_set.data, input_name), config.method,
                               config.percentile, scratch / RANGES)
            ranges_path = scratch / RANGES
        else:
            ranges = load_ranges(ranges_path)
        shutil.copyfile(ranges_path, tmp / RANGES)

        tracks = tracks_for(config)
        val, test = dataset.val, dataset.test
        reference = {"val": score_of(src.onnx, val, task), "test": score_of(src.onnx, test, task)}
        judge = Judge(prepared, config.method, tmp / RANGES, val, reference["val"], budget.left, task)
        fallback = _quantize_within_budget(judge, tmp, tracks, keep_float)
        check_trt_qdq(tmp / INT8_TRT)
        speed_batch = np.resize(test.take(config.speed_batch), (config.speed_batch, *test.sample_shape))
        cpu_speed = None
        if speed and config.cpu_speed_fallback:
            cpu_speed = cpu_float_where_faster(judge, tmp, tracks[INT8_CPU], fallback["excluded"],
                                               SpeedProbe(speed_batch, runtimes, config.retime))

        scales = trt_cache.scales_from_ranges(ranges)
        trt_cache.write_cache(tmp / CACHE, scales, config.tensorrt_version)
        header, parsed = trt_cache.parse_cache(tmp / CACHE)
        if parsed != scales:
            raise RuntimeError("trt.calib.cache does not parse back to the scales written")  # a bug, not user input

        fp16_report = None
        if config.fp16:
            fp16_report = fp16_tools.overflow_report(src.onnx, ranges)
            fp16_tools.convert_fp16(src.onnx, tmp / FP16, fp16_report["nodes_kept_fp32"])

        qat_summary = None
        if config.qat:
            from edgepipe.quant.qat import quantization_aware_training

            qat_summary = quantization_aware_training(src, tmp, config, calibration_set, reference, context)

        rows = _evaluate_artifacts(tmp, dataset, reference, config.fp16, qat_summary, task)
        used = max(0.0, *(row.drop_val for row in rows))  # the worst artifact quantize ships, on val
        if qat_summary:
            ptq = max(r.drop_val for r in rows if r.name in ("int8-cpu", "int8-trt"))
            qat = max(qat_summary["val_drop"].values())
            qat_summary.update(ptq_val_drop=ptq, recovered=round(ptq - qat, 4), qat_helped=qat <= ptq)
        fp32_size = src.onnx.stat().st_size
        for row in rows:
            row.size_ratio = round(row.size_bytes / fp32_size, 4)
            if row.precision == "int8":  # an "INT8" file says how much of it is INT8
                row.int8 = int8_coverage(tmp / row.file)
        naive = None
        if config.compare_naive if config.compare_naive is not None else task.name == "detection":
            from edgepipe.quant.naive import compare, naive_int8

            naive_path = naive_int8(prepared, scratch / "model.int8.naive.onnx", config.method, tmp / RANGES)
            naive = compare(src.onnx, naive_path, {r.name: tmp / r.file for r in rows if r.precision == "int8"},
                            test, task, dataset.labels)
        speed_rows = {}
        if speed:
            models = {"fp32": src.onnx, **{r.name: tmp / r.file for r in rows}}
            speed_rows = measure_speed(models, speed_batch, available_cpus(),
                                       (cpu_speed or {}).get("runtime", "onnxruntime"))
            for row in rows:
                row.speed_ratio = round(speed_rows[row.name]["throughput_per_s"]
                                        / speed_rows["fp32"]["throughput_per_s"], 3)

        manifest.carry_from(src.manifest, src.stage_dir)
        manifest.source = {"onnx": str(src.onnx), "stage_dir": str(src.stage_dir), "sha256": model_sha}
        manifest.calibration = calibration_set.describe()
        manifest.calibration_cache = {
            "file": CACHE, "sha256": sha256_file(tmp / CACHE), "header": header, "tensors": len(scales),
            "model_sha256": model_sha, "calibration_sha256": calibration_set.sha256, "method": config.method,
            "ranges_file": RANGES, "ranges_sha256": sha256_file(tmp / RANGES), "ranges_key": ranges_key,
        }
        for row in rows:
            add_artifact(manifest, tmp, row.file, name=row.name, fmt="onnx", precision=row.precision,
                         track=row.track, calibration_sha256=calibration_set.sha256)
        manifest.metrics = QuantizeResult(
            reference_fp32={"file": str(src.onnx), "size_bytes": fp32_size, **reference}, task=task.describe(),
            artifacts=rows, speed=speed_rows, max_drop=budget.max_drop, budget=budget.record(used),
            fallback=fallback, cpu_speed_fallback=cpu_speed, fp16_overflow=fp16_report, cpu=cpu_vnni(),
            qat=qat_summary, naive=naive, score_split="val decides (budget, fallback); test is reported only",
        ).to_json()
    say(f"quantize: {out}  (" + ", ".join(f"{r.name} drop {r.drop:+.2f} {task.unit}"
                                          + (f" [{describe_coverage(r.int8)}]" if r.int8 else "") for r in rows)
        + f"; vs its source on test)  quantize {budget.line(used)} on val")
    return out


def _quantize_within_budget(judge: Judge, tmp: Path, tracks: dict, keep_float: list[str] = ()) -> dict:
    """Quantize both tracks; when the worse one loses more than the budget left on val, keep sensitive nodes in
    float. ``keep_float``: nodes the user keeps in float whatever the budget (in every probe, and in the result)."""
    from edgepipe.quant.sensitivity import PROXY_SAMPLES, fit_budget, quantization_error_ranking
    from edgepipe.quant.tracks import quantize_track, quantized_nodes

    prepared, task, max_drop = judge.prepared, judge.task, judge.allowed
    probe_dir = Path(tempfile.mkdtemp(prefix="probe-", dir=prepared.parent))
    candidates: list[tuple[str, str]] = []

    def drop(only: list[str] | None, exclude: list[str], target: Path = probe_dir) -> float:
        worst = 0.0
        for filename, track in tracks.items():
            path = target / filename
            if only is not None:  # every other quantized node stays in float
                exclude = [name for name, _ in candidates if name not in only]
            quantize_track(prepared, path, track, judge.method, judge.ranges, [*keep_float, *exclude])
            worst = max(worst, judge.drop_of(path))
        return worst

    full_drop = drop(None, [], tmp)
    result = {"needed": False, "max_drop": max_drop, "unit": task.unit, "val_drop": round(full_drop, 4),
              "excluded": list(keep_float), **({"kept_float_by_user": list(keep_float)} if keep_float else {})}
    if full_drop <= max_drop:
        return result
    if max_drop <= 0:  # the stages before quantize spent the whole budget: only the FP32 model could meet it
        say(f"[yellow]quantize: nothing of the budget is left for INT8 (the pruned model already spent it on val); "
            f"INT8 loses {full_drop:.2f} {task.unit} more, so the graphs stay as quantized and eval will fail "
            "them: prune less, or raise the budget[/yellow]")
        return {**result, "over_budget": True}
    quantized = [tmp / filename for filename in tracks]
    candidates = quantized_nodes(prepared, quantized)
    say(f"quantize: INT8 loses {full_drop:.2f} {task.unit} on val (budget left {max_drop:.2f}); ranking the "
        f"{len(candidates)} quantized nodes by sensitivity")

    def proxy() -> list[dict]:
        return quantization_error_ranking(prepared, quantized, candidates, judge.val.take(PROXY_SAMPLES),
                                          model_input(prepared)[0])

    fitted = fit_budget(candidates, drop, max_drop, full_drop, task.unit, proxy)
    final = drop(None, fitted.excluded, tmp)
    return {**result, "needed": True, "excluded": [*keep_float, *fitted.excluded], "val_drop_after": round(final, 4),
            "sensitivity": fitted.table, "steps": fitted.steps}


def _checked_node_names(model: Path, names: list[str], shown: Path | None = None) -> list[str]:
    """``names`` when every one is a node of ``model`` (the graph as quantize prepares it: the exported names, but
    for the few nodes onnxruntime's preprocessing fuses); else one line naming the first unknown one, the file the
    user knows (``shown``) and the closest node names."""
    import difflib

    from edgepipe.quant.tracks import graph_nodes

    if not names:
        return []
    known = [name for name, *_ in graph_nodes(model)]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
            raise EdgepipeError(f"keep_float {name!r}: no node of that name in {(shown or model).name} as quantize "
                                f"prepares it ({len(known)} nodes" + (f"; closest: {', '.join(close)}" if close else "")
                                + ")")
    return list(dict.fromkeys(names))


def _evaluate_artifacts(tmp: Path, dataset, reference: dict, fp16: bool, qat: dict | None,
                        task: Task) -> list[QuantizedArtifact]:
    entries = [("int8-cpu", INT8_CPU, "int8", "cpu"), ("int8-trt", INT8_TRT, "int8", "tensorrt-qdq")]
    if fp16:
        entries.append(("fp16", FP16, "fp16", "fp16"))
    if qat:
        entries += [("int8-cpu-qat", qat["files"]["cpu"], "int8", "cpu"),
                    ("int8-trt-qat", qat["files"]["trt"], "int8", "tensorrt-qdq")]
    rows = []
    for name, filename, precision, track in entries:
        path = tmp / filename
        scores = {split: score_of(path, getattr(dataset, split), task) for split in ("val", "test")}
        rows.append(QuantizedArtifact(name=name, file=filename, precision=precision, track=track,
                                      size_bytes=path.stat().st_size, score=scores["test"], score_val=scores["val"],
                                      drop=round(task.drop(reference["test"], scores["test"]), 4),
                                      drop_val=round(task.drop(reference["val"], scores["val"]), 4)))
    return rows
