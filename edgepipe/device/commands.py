"""The device runtime's commands: build, eval, infer, bench and doctor (triton and deepstream: serving.py)."""

import json
import os
import shutil
import sys
import time

import numpy as np

from .bounds import DeclaredTooLarge, load_arrays_bounded
from .builder import build_serialized_engine, check_engine_deserializes
from .bundle import Bundle
from .common import emit, say, sha256_file, write_bytes_atomic
from .cuda import cuda_device, cudart, jetson_model
from .engine import Engine, OrtModel
from .errors import DeviceError, MissingPiece
from .layout import BUILD, MANIFEST, PRECISIONS, engine_file
from .loader import load_tensorrt, tensorrt_version
from .planning import plan_build
from .scoring import DISPLAY_SCORE, model_outputs
from .settings import OPTIONS, BuildSettings, check_combinations, check_release_supports, default_workspace_mib
from .trtexec import build_with_trtexec, find_trtexec

RUNTIME_VERSION = "1"


def command_build(args):
    bundle = Bundle(args.bundle).verify()
    trt, reason = load_tensorrt()
    precisions = bundle.manifest.get("precisions") or list(PRECISIONS)
    precision = precisions[0] if args.precision == "best" else args.precision
    if precision not in precisions:
        raise DeviceError("this bundle cannot build {} for {}; it can build {}".format(
            precision, (bundle.manifest.get("target") or {}).get("name"), ", ".join(precisions)))
    out_dir = os.path.join(bundle.path, "{}-{}".format(BUILD, precision))
    device = None
    if trt is not None:
        device = cuda_device()
        if device is None:
            raise MissingPiece("TensorRT {} is installed but no CUDA GPU is visible".format(trt.__version__))
        bundle.check_device(device)
    values = dict((option.name, getattr(args, option.name)) for option in OPTIONS[1:])
    if values["workspace_mib"] is None:
        values["workspace_mib"] = default_workspace_mib(device["total_memory_mib"] if device else None)
    settings = BuildSettings(precision, **values)
    check_combinations(settings)
    tmp_dir = out_dir + ".tmp-{}".format(os.getpid())
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    try:
        if trt is None:
            say("build: {}".format(reason))
            engine_path, command, onnx_path = build_with_trtexec(bundle, settings, tmp_dir)
            record = {"built_by": "trtexec", "command": command["command"], "how": command["how"]}
        else:
            check_release_supports(trt, settings)
            plan = plan_build(bundle.build_files(), precision, tensorrt_version(trt)[0], where=bundle.path,
                              check_cache=bundle.check_cache)
            say("build: {} ({})".format(plan.reason, trt.__version__))
            result = build_serialized_engine(trt, plan, settings)
            engine_path = os.path.join(tmp_dir, engine_file(precision))
            write_bytes_atomic(engine_path, result["engine"])
            with open(engine_path, "rb") as handle:
                check_engine_deserializes(trt, handle.read(), settings.to_json())
            record = {"built_by": "edgepipe_device", "plan": plan.reason, "applied": result["applied"],
                      "input": {"name": result["input_name"], "shape": list(result["input_shape"])},
                      "machine": {"tensorrt": trt.__version__, "gpu": device["name"],
                                  "compute_capability": "{}.{}".format(*device["compute_capability"])}}
            onnx_path = plan.onnx
        manifest = {"stage": BUILD, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "config": dict(record, source=bundle.path, precision=precision, settings=settings.to_json(),
                                   onnx=str(onnx_path), runtime="edgepipe_device " + RUNTIME_VERSION),
                    "parents": {"onnx": sha256_file(onnx_path)},
                    "artifacts": [{"name": "tensorrt-" + precision, "file": engine_file(precision), "format": "engine",
                                   "precision": precision, "sha256": sha256_file(engine_path),
                                   "size_bytes": os.path.getsize(engine_path), "backend": "tensorrt"}],
                    "metrics": {}}
        write_bytes_atomic(os.path.join(tmp_dir, MANIFEST), json.dumps(manifest, indent=2).encode("utf-8"))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.rename(tmp_dir, out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    emit(os.path.join(out_dir, engine_file(precision)))
    return 0


def _open_subjects(bundle, threads=None):
    """What eval / bench / infer run: the bundle's engines on TensorRT, else its ONNX files on onnxruntime."""
    trt, reason = load_tensorrt()
    engines = bundle.engines()
    if trt is not None and engines:
        device = cuda_device()
        if device is None:
            raise MissingPiece("TensorRT {} is installed but no CUDA GPU is visible".format(trt.__version__))
        return [(name, precision, "tensorrt", lambda p=path, s=settings: Engine(p, s, trt=trt))
                for name, precision, path, settings in engines], None
    why = reason if trt is None else "no engine built in the bundle yet (run `build` first)"
    subjects = [(name, precision, "onnxruntime-cpu", lambda p=path: OrtModel(p, threads))
                for name, precision, path in bundle.onnx_artifacts()]
    return subjects, "TensorRT engines not run: {}; evaluating the bundle's ONNX files on onnxruntime's CPU " \
                     "provider instead".format(why)


def infer_in_batches(model, x, batch_size):
    outputs = None
    for start in range(0, len(x), batch_size):
        result = model.infer(x[start:start + batch_size])
        if outputs is None:
            outputs = dict((name, []) for name in result)
        for name, value in result.items():
            outputs[name].append(value)
    return dict((name, np.concatenate(values)) for name, values in outputs.items())


# A task's score, per sample, and how two models' outputs agree: the numeric core that `edgepipe eval` on the
# workstation (edgepipe.tasks) and this file's eval share, so a Jetson's verdict and the workstation's agree.
def evaluate_bundle(bundle, batch_size=256, threads=None):
    """The eval report of the bundle's engines (or ONNX files): the task's score, drop, agreement vs the stored
    outputs."""
    x, targets, reference = bundle.reference()
    task = bundle.task()
    budget = float(bundle.manifest.get("max_drop", bundle.manifest.get("max_accuracy_drop", 0.5)))
    original = task.score(reference, targets)
    recorded_by = (bundle.manifest.get("original") or {}).get("backend") or "torch"
    rows = [{"name": "original", "precision": "fp32", "backend": "{} (recorded when bundled)".format(recorded_by),
             "score": original, "drop": 0.0, "agreement": task.agreement(reference, reference),
             "max_abs_diff": 0.0}]
    subjects, note = _open_subjects(bundle, threads)
    if note:
        say("eval: " + note)
    for name, precision, backend, opener in subjects:
        with opener() as model:
            outputs = infer_in_batches(model, x, batch_size)
        candidate = model_outputs(outputs).astype(np.float32)
        if candidate.shape != reference.shape:
            raise DeviceError("{} returns outputs of shape {}; the bundle's reference outputs are {}: it is not the "
                              "bundled model".format(name, candidate.shape, reference.shape))
        score = task.score(candidate, targets)
        drop = round(task.drop(original, score), 4)
        rows.append({"name": name, "precision": precision, "backend": backend, "score": score,
                     "drop": drop, "within_budget": drop <= budget,
                     "agreement": task.agreement(candidate, reference),
                     "max_abs_diff": float(np.abs(candidate - reference).max())})
    failed = [row["name"] for row in rows if row.get("within_budget") is False]
    return {"bundle": bundle.path, "samples": int(len(x)), "task": {"name": task.name, "metric": task.metric,
            "unit": task.unit}, "max_drop": budget, "artifacts": rows, "passed": not failed, "failed": failed,
            "note": note}


def _table(rows, columns):
    header = [title for title, _ in columns]
    body = [[fmt(row) for _, fmt in columns] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in body]
    return "\n".join(lines)


def command_eval(args):
    bundle = Bundle(args.bundle).verify()
    report = evaluate_bundle(bundle, batch_size=args.batch_size, threads=args.threads)
    unit = report["task"]["unit"]
    if report["task"]["name"] == "classification":
        score_column = ("top-1", lambda r: "{:.2%}".format(r["score"]))
        agreement = ("agreement", lambda r: "{:.2%}".format(r["agreement"]))
    elif report["task"]["name"] == "detection":  # mAP in points, agreement as same class at IoU >= 0.5
        score_column = ("mAP@0.5", lambda r: "{:.2f}".format(100 * r["score"]))
        agreement = ("box agreement", lambda r: "{:.2%}".format(r["agreement"]))
    else:  # reconstruction: PSNR, and agreement as the PSNR between an artifact's output and the original's
        score_column = ("PSNR", lambda r: "{:.2f} dB".format(r["score"]))
        agreement = ("vs original", lambda r: "{:.1f} dB".format(r["agreement"]))
    emit(_table(report["artifacts"], [
        ("artifact", lambda r: r["name"]), ("precision", lambda r: r["precision"]),
        ("backend", lambda r: r["backend"]), score_column,
        ("drop ({})".format(unit), lambda r: "{:+.2f}".format(r["drop"])), agreement,
        ("budget", lambda r: "-" if "within_budget" not in r else ("ok" if r["within_budget"] else "OVER"))]))
    verdict = "passed" if report["passed"] else "FAILED: {} over the {} {} budget".format(
        ", ".join(report["failed"]), report["max_drop"], unit)
    emit("eval on {} bundled samples: {}".format(report["samples"], verdict))
    if args.json:
        write_bytes_atomic(args.json, json.dumps(report, indent=2).encode())
    return 0 if report["passed"] else 1


def _pick(bundle, name, threads=None):
    subjects, note = _open_subjects(bundle, threads)
    if note:
        say(note)
    if not subjects:
        raise DeviceError("bundle {} holds nothing to run".format(bundle.path))
    if name is None:
        return subjects[0]
    for subject in subjects:
        if subject[0] == name:
            return subject
    raise DeviceError("no artifact {!r} here; choose one of {}".format(name, ", ".join(s[0] for s in subjects)))


def _softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def command_infer(args):
    bundle = Bundle(args.bundle).verify()
    try:
        data = load_arrays_bounded(args.input, "infer fewer samples at a time")
    except DeclaredTooLarge as exc:
        raise DeviceError(str(exc)) from None
    except (ValueError, OSError) as exc:
        raise DeviceError("{} is not a .npy array ({}); save the preprocessed inputs with numpy.save".format(
            args.input, exc)) from None
    if isinstance(data, dict):  # an .npz: its first array
        if not data:
            raise DeviceError("{} holds no arrays".format(args.input))
        data = next(iter(data.values()))
    sample_shape = tuple((bundle.manifest.get("model") or {}).get("input_shape") or ())
    x = np.asarray(data, np.float32)
    if sample_shape and x.shape == sample_shape:
        x = x[None]
    if sample_shape and x.shape[1:] != sample_shape:
        raise DeviceError("{} has shape {}; the model takes {} per sample (N x {})".format(
            args.input, x.shape, sample_shape, " x ".join(str(d) for d in sample_shape)))
    name, precision, backend, opener = _pick(bundle, args.artifact)
    with opener() as model:
        outputs = model.infer(x)
    first = model_outputs(outputs)
    task = bundle.task()
    results = []
    if task.name == "detection":  # the confident boxes, in the model input's pixels
        labels = bundle.labels()
        for index, rows in enumerate(first):
            shown = rows[(rows[:, 5] >= 0) & (rows[:, 4] >= DISPLAY_SCORE)]
            found = [{"class": int(row[5]), "label": labels[int(row[5])] if int(row[5]) < len(labels)
                      else str(int(row[5])), "score": float(row[4]), "box": [float(v) for v in row[:4]]}
                     for row in shown]
            results.append({"index": index, "detections": found})
            emit("{:>4}  {}".format(index, "  ".join("{} {:.2f} [{:.0f} {:.0f} {:.0f} {:.0f}]".format(
                d["label"], d["score"], *d["box"]) for d in found) or "no detection"))
    elif task.name == "reconstruction":  # how close each reconstruction is to its input
        for index, value in enumerate(task.per_sample(first, x)):
            results.append({"index": index, "psnr_db": float(value)})
            emit("{:>4}  reconstruction PSNR {:.2f} dB".format(index, float(value)))
    else:
        labels = bundle.labels()
        for index, row in enumerate(_softmax(first.astype(np.float64))):
            top = np.argsort(-row)[:args.top]
            predictions = [{"class": int(k), "label": labels[k] if k < len(labels) else str(k),
                            "probability": float(row[k])} for k in top]
            results.append({"index": index, "top": predictions})
            emit("{:>4}  {}".format(index, "  ".join("{} {:.1%}".format(p["label"], p["probability"])
                                                      for p in predictions)))
    say("infer: {} ({}, {})".format(name, precision, backend))
    if args.json:
        write_bytes_atomic(args.json, json.dumps({"artifact": name, "backend": backend, "results": results},
                                                 indent=2).encode())
    return 0


def bench_model(model, batch, seconds, warmup=10, min_iters=50):
    for _ in range(warmup):
        model.infer(batch)
    host, compute = [], []
    started = time.perf_counter()
    while len(host) < min_iters or time.perf_counter() - started < seconds:
        model.infer(batch)
        compute.append(model.last_timing[0])
        host.append(model.last_timing[1])
    host, compute = np.asarray(host), np.asarray(compute)
    return {"batch": int(len(batch)), "iterations": int(len(host)),
            "p50_ms": float(np.percentile(host, 50)), "p90_ms": float(np.percentile(host, 90)),
            "p99_ms": float(np.percentile(host, 99)), "compute_p50_ms": float(np.percentile(compute, 50)),
            "throughput_per_s": float(len(batch) / (np.percentile(host, 50) / 1000.0))}


def command_bench(args):
    bundle = Bundle(args.bundle).verify()
    x, _, _ = bundle.reference()
    batch = np.resize(x, (args.batch,) + x.shape[1:]).astype(np.float32)
    subjects, note = _open_subjects(bundle, args.threads)
    if note:
        say("bench: " + note)
    rows = []
    for name, precision, backend, opener in subjects:
        if args.artifact and name != args.artifact:
            continue
        cuda = cudart() if backend == "tensorrt" else None
        free_before = cuda.mem_get_info()[0] if cuda else None
        with opener() as model:
            row = bench_model(model, batch, args.seconds)
            if cuda:
                # What this engine took from the device (cudaMemGetInfo before and while it is loaded; on a Jetson
                # the CPU shares that memory), and what TensorRT says it needs for activations plus I/O buffers.
                row["device_memory_bytes"] = int(free_before - cuda.mem_get_info()[0])
                row["engine_memory_bytes"] = int(model.device_memory_bytes)
        row.update(name=name, precision=precision, backend=backend)
        rows.append(row)
    emit(_table(rows, [
        ("artifact", lambda r: r["name"]), ("backend", lambda r: r["backend"]), ("batch", lambda r: str(r["batch"])),
        ("p50 ms", lambda r: "{:.3f}".format(r["p50_ms"])), ("p90 ms", lambda r: "{:.3f}".format(r["p90_ms"])),
        ("p99 ms", lambda r: "{:.3f}".format(r["p99_ms"])),
        ("compute p50", lambda r: "{:.3f}".format(r["compute_p50_ms"])),
        ("samples/s", lambda r: "{:.0f}".format(r["throughput_per_s"])),
        ("device MiB", lambda r: "-" if "device_memory_bytes" not in r else "{:.1f}".format(
            r["device_memory_bytes"] / 2.0 ** 20))]))
    if args.json:
        write_bytes_atomic(args.json, json.dumps({"bundle": bundle.path, "rows": rows}, indent=2).encode())
    return 0


def doctor_report():
    """What this machine offers the runtime: Python, numpy, TensorRT, the CUDA runtime, the GPU, trtexec."""
    trt, why = load_tensorrt()
    try:
        cuda = cudart()
        devices, cuda_why = cuda.device_count(), ""
    except MissingPiece as exc:
        devices, cuda_why = 0, str(exc)
    device = cuda_device() if devices else None
    try:
        import onnxruntime  # noqa: F401 - only whether it is there
        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    return {"python": sys.version.split()[0], "numpy": np.__version__,
            "tensorrt": trt.__version__ if trt is not None else None, "tensorrt_why": why,
            "cuda_devices": devices, "cuda_why": cuda_why,
            "gpu": None if device is None else {"name": device["name"], "sm": "sm_{}{}".format(
                *device["compute_capability"]), "memory_mib": device["total_memory_mib"]},
            "jetson": jetson_model(), "trtexec": find_trtexec(), "onnxruntime": ort}


def command_doctor(args):
    report = doctor_report()
    rows = [("Python", report["python"]), ("numpy", report["numpy"]),
            ("TensorRT", report["tensorrt"] or "missing: " + report["tensorrt_why"]),
            ("CUDA runtime", "{} device(s)".format(report["cuda_devices"]) if not report["cuda_why"]
             else report["cuda_why"]),
            ("GPU", "-" if report["gpu"] is None else "{name} ({sm}, {memory_mib} MiB)".format(**report["gpu"])),
            ("Jetson", report["jetson"] or "-"), ("trtexec", report["trtexec"] or "not found"),
            ("onnxruntime", report["onnxruntime"] or "not installed (only needed without TensorRT)")]
    emit(_table([{"what": k, "found": v} for k, v in rows], [("what", lambda r: r["what"]),
                                                                 ("found", lambda r: str(r["found"]))]))
    if args.json:
        write_bytes_atomic(args.json, json.dumps(report, indent=2).encode())
    return 0
