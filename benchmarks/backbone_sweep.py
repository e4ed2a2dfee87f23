"""Which torchvision / timm classification backbones go through prune → ONNX export → INT8 quantize, and how long.

    .venv/bin/python benchmarks/backbone_sweep.py [--families resnet vit ...] [--ratio 0.3] [--json sweep.json]

Every torchvision classification builder (``list_models(module=torchvision.models)``, minus those over 100 M
parameters unless ``--all``) and a set of timm families are built randomly initialized for 3x64x64 images and 3
classes (transformers get the image size; timm's ViT is 2 blocks deep), then, with the project's own functions:

- prune: ``check_prunable``, ``build_pruner``, ``pruning_step`` (channel, l1, ratio 0.3, round_to 8, one step, no
  fine-tuning); the pruning history is replayed on a fresh model from its JSON, as loading a pruned checkpoint does;
- export: ``export_onnx`` (the project's default exporter unless ``--exporter``), onnxruntime against PyTorch;
- quantize: ``preprocess``, ``calibrate`` on 16 generated images, both INT8 tracks (QDQ for TensorRT, u8s8 for
  onnxruntime's CPU), ``check_trt_qdq``, the CPU track run against the float ONNX.

A model whose pruning is refused goes on unpruned (export and quantize still tell something). A refusal is an
EdgepipeError, recorded with its one line and stage; any other exception is a crash: the bug this sweep looks for.
Each model runs in a fresh process (one process for all of them grew past 24 GB); ``--resume`` continues a
``--json`` file. Inception v3 runs at 96x96 and MaxViT at 224x224, the smallest inputs they take. The whole sweep
(70 models) took about 50 minutes on one thread of a shared 2-core machine, mostly in export and quantize.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import resource
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgepipe.errors import EdgepipeError, first_line

INPUT_SHAPE = [3, 64, 64]
# models that cannot take 64x64: Inception's stem leaves 2x2 for a 3x3 kernel, MaxViT partitions 7x7 windows
MIN_SIZE = {"torchvision:inception_v3": 96, "torchvision:maxvit_t": 224}
NUM_CLASSES = 3
CALIBRATION_IMAGES = 16
# timm families, small members: (name, params). No ShuffleNet in timm; GhostNet is the nearest (cheap operations
# concatenated, then sliced back to the output width).
TIMM_MODELS = {
    "resnet18": {},
    "mobilenetv3_small_050": {},
    "mobilenetv2_050": {},
    "efficientnet_b0": {},
    "ghostnet_050": {},
    "convnext_atto": {},
    "vit_tiny_patch16_224": {"depth": 2},
}
# over 100 M parameters even with 3 classes (VGG's first classifier layer alone has 103 M at 64x64)
TORCHVISION_LARGE = {"vit_h_14", "vit_l_16", "vit_l_32", "regnet_y_128gf", "regnet_y_32gf", "regnet_x_32gf",
                     "convnext_large", "efficientnet_v2_l", "wide_resnet101_2", "vgg11", "vgg11_bn", "vgg13",
                     "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"}


def candidates(families: list[str] | None, include_large: bool) -> list[tuple[str, dict[str, Any]]]:
    """(model name, params) of every model in the sweep; ``families`` are substrings or globs of the name."""
    import torchvision

    names = [(f"torchvision:{name}", {}) for name in torchvision.models.list_models(module=torchvision.models)
             if include_large or name not in TORCHVISION_LARGE]
    names += [(f"timm:{name}", params) for name, params in TIMM_MODELS.items()]
    if not families:
        return names
    return [(name, params) for name, params in names
            if any(family in name or fnmatch.fnmatch(name.partition(":")[2], family) for family in families)]


def _outcome(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, EdgepipeError):
        return {"status": "refused", "reason": str(exc), "one_line": "\n" not in str(exc)}
    return {"status": "crashed", "reason": f"{type(exc).__name__}: {first_line(exc)[:300]}",
            "traceback": traceback.format_exc(limit=-6)}


def prune_model(model, name: str, ratio: float, shape: list[int]) -> dict[str, Any]:
    """Prune ``model`` in place as the prune stage does (no data, no fine-tuning); the history as JSON."""
    from edgepipe.pruning.channel import ChannelOptions, build_pruner, check_prunable, pruning_step
    from edgepipe.pruning.replay import history_to_json

    check_prunable(model, name, "l1", shape)
    pruner = build_pruner(model, shape, ChannelOptions(model_name=name), ratio=ratio, steps=1)
    pruning_step(pruner, model, "l1", None)
    return {"history": history_to_json(pruner.pruning_history())}


def replay_matches(model, spec: dict[str, Any], history: list, probe: torch.Tensor) -> float:
    """Max |difference| between ``model`` and a fresh build reshaped by the JSON history, with its weights."""
    from edgepipe.models import build_model
    from edgepipe.pruning.replay import rebuild, rebuild_record

    record = json.loads(json.dumps(rebuild_record(spec["input_shape"], history)))
    fresh = rebuild(build_model(spec), record)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        return float((fresh.eval()(probe) - model(probe)).abs().max())


def export_and_compare(model, path: Path, exporter: str, probe: np.ndarray) -> dict[str, Any]:
    """Export to ONNX; onnxruntime's outputs against PyTorch's on ``probe``."""
    from edgepipe.onnx_export import INPUT_NAME, export_onnx, parity
    from edgepipe.recipe import ExportConfig
    from edgepipe.runners.onnxruntime import OrtRunner
    from edgepipe.tasks import task_named

    names = export_onnx(model, torch.from_numpy(probe[:2]), path, ExportConfig(exporter=exporter))
    with torch.no_grad():
        reference = model(torch.from_numpy(probe)).numpy()
    with OrtRunner(path, threads=torch.get_num_threads()) as runner:
        candidate = runner.infer({INPUT_NAME: probe})[names[0]]
    return {"bytes": path.stat().st_size, **parity(reference, candidate, task_named("classification"))}


def quantize_and_compare(onnx_path: Path, scratch: Path, images: np.ndarray) -> dict[str, Any]:
    """Both INT8 tracks from one calibration; the CPU track's outputs against the float ONNX's."""
    from edgepipe.onnx_export import INPUT_NAME, parity
    from edgepipe.quant.calibration import ArrayDataReader
    from edgepipe.quant.tracks import calibrate, check_trt_qdq, cpu_track, preprocess, quantize_track, trt_track
    from edgepipe.runners.onnxruntime import OrtRunner
    from edgepipe.tasks import task_named

    prepared = preprocess(onnx_path, scratch / "prepared.onnx")
    ranges = scratch / "ranges.json"
    calibrate(prepared, ArrayDataReader(images, INPUT_NAME, batch_size=8), "minmax", 99.999, ranges)
    trt = quantize_track(prepared, scratch / "model.int8.trt.onnx", trt_track(), "minmax", ranges)
    check_trt_qdq(trt)
    cpu = quantize_track(prepared, scratch / "model.int8.cpu.onnx", cpu_track(), "minmax", ranges)
    outputs = {}
    for label, path in (("float", onnx_path), ("int8", cpu)):
        with OrtRunner(path, threads=torch.get_num_threads()) as runner:
            outputs[label] = next(iter(runner.infer({INPUT_NAME: images}).values()))
    return parity(outputs["float"], outputs["int8"], task_named("classification"))


def sweep_one(name: str, params: dict[str, Any], *, ratio: float, exporter: str, workdir: Path) -> dict[str, Any]:
    """One model through build → prune → export → quantize; a dict of what happened, never an exception."""
    from edgepipe.complexity import count_macs_params
    from edgepipe.models import build_model

    torch.manual_seed(0)
    size = MIN_SIZE.get(name, INPUT_SHAPE[-1])
    shape = [INPUT_SHAPE[0], size, size]
    images = np.random.default_rng(0).normal(size=(CALIBRATION_IMAGES, *shape)).astype(np.float32)
    spec = {"name": name, "params": params, "input_shape": shape, "num_classes": NUM_CLASSES}
    row: dict[str, Any] = {"model": name, "params": params, "input_shape": shape, "seconds": {}}
    stage, started = "build", time.perf_counter()
    try:
        model = build_model(spec).eval()
        row["macs_before"], row["params_before"] = count_macs_params(model, shape)
        row["seconds"]["build"] = time.perf_counter() - started

        stage, started = "prune", time.perf_counter()
        try:
            history = prune_model(model, name, ratio, shape)["history"]
        except EdgepipeError as exc:
            row["prune"] = _outcome(exc)
            model = build_model(spec).eval()  # a refusal may come mid-way: go on with an untouched model
        else:
            model.eval()
            row["macs_after"], row["params_after"] = count_macs_params(model, shape)
            row["prune"] = {"status": "pruned", "groups": len(history),
                            "replay_max_diff": replay_matches(model, spec, history, torch.from_numpy(images[:4]))}
        row["seconds"]["prune"] = time.perf_counter() - started

        stage, started = "export", time.perf_counter()
        onnx_path = workdir / "model.onnx"
        row["export"] = {"status": "ok", **export_and_compare(model, onnx_path, exporter, images[:4])}
        row["seconds"]["export"] = time.perf_counter() - started

        stage, started = "quantize", time.perf_counter()
        row["quantize"] = {"status": "ok", **quantize_and_compare(onnx_path, workdir, images)}
        row["seconds"]["quantize"] = time.perf_counter() - started
    except Exception as exc:  # the sweep records every failure; a crash's traceback is kept in the JSON
        row["seconds"][stage] = time.perf_counter() - started
        row[stage] = _outcome(exc)
        row["stopped_at"] = stage
    return row


def _child(name: str, params: dict[str, Any], ratio: float, exporter: str, threads: int | None) -> dict[str, Any]:
    # torch-pruning warns about every model with a bare nn.Parameter (ViT's pos_embed, ConvNeXt's layer scale);
    # its default (prune the last non-singleton dimension) is the right one for these, and replay checks it
    warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="sweep-") as scratch:
        row = sweep_one(name, params, ratio=ratio, exporter=exporter, workdir=Path(scratch))
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def isolated(name: str, params: dict[str, Any], **options) -> dict[str, Any]:
    """``sweep_one`` in a fresh process: what the exporters and onnxruntime keep does not pile up across 80
    models (one process reached 24 GB and was killed), and a model that kills its process is one row."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_child, name, params, **options).result()
        except BrokenProcessPool:
            return {"model": name, "params": params, "seconds": {"all": time.perf_counter() - started},
                    "process": {"status": "crashed", "reason": "its process died (out of memory, or a crash in "
                                "native code)"}, "stopped_at": "unknown"}


def _status(row: dict[str, Any], stage: str) -> str:
    entry = row.get(stage)
    if entry is None:
        return "-"
    status = entry["status"]
    return {"pruned": "[green]pruned", "ok": "[green]ok", "refused": "[yellow]refused",
            "crashed": "[red]CRASHED"}.get(status, status)


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"backbone sweep: {'x'.join(map(str, INPUT_SHAPE))}, {NUM_CLASSES} classes")
    for column in ("model", "MACs before", "after", "prune", "export", "int8", "s"):
        table.add_column(column, no_wrap=True)
    table.add_column("why not", overflow="fold")
    for row in rows:
        before, after = row.get("macs_before"), row.get("macs_after")
        failed = next((row[s] for s in ("process", "build", "prune", "export", "quantize")
                       if isinstance(row.get(s), dict) and row[s]["status"] in ("refused", "crashed")), None)
        size = "" if row.get("input_shape", INPUT_SHAPE) == INPUT_SHAPE else f" @{row['input_shape'][-1]}"
        table.add_row(row["model"] + size, f"{before / 1e6:.1f} M" if before else "-",
                      f"{after / 1e6:.1f} M ({after / before:.0%})" if after and before else "-",
                      _status(row, "prune"), _status(row, "export"), _status(row, "quantize"),
                      f"{sum(row['seconds'].values()):.1f}", failed["reason"] if failed else "")
    console = Console()
    if not console.is_terminal:  # a log file: wide rows rather than reasons folded into a narrow column
        console = Console(width=240)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", help="substrings or globs of model names (e.g. resnet 'vit_*')")
    parser.add_argument("--all", action="store_true", help="include the torchvision models over 100 M parameters")
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--exporter", choices=("dynamo", "torchscript"), default=None,
                        help="default: the project's export default")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads")
    parser.add_argument("--json", type=Path, help="write every row (with crash tracebacks) here")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --json, run the rest")
    args = parser.parse_args()
    from edgepipe import defaults

    exporter = args.exporter or defaults.EXPORT["exporter"]
    done = json.loads(args.json.read_text())["rows"] if args.resume and args.json and args.json.is_file() else []
    rows = list(done)
    for name, params in candidates(args.families, args.all):
        if any(row["model"] == name for row in done):
            continue
        row = isolated(name, params, ratio=args.ratio, exporter=exporter, threads=args.threads)
        rows.append(row)
        print(f"{name}: prune {row.get('prune', {}).get('status', '-')}, export "
              f"{row.get('export', {}).get('status', '-')}, int8 {row.get('quantize', {}).get('status', '-')} "
              f"({sum(row['seconds'].values()):.1f} s, peak {row.get('peak_rss_mib', 0):.0f} MiB)", flush=True)
        if args.json:  # after every model: a long sweep that dies keeps what it measured
            args.json.write_text(json.dumps({"input_shape": INPUT_SHAPE, "ratio": args.ratio, "exporter": exporter,
                                             "threads": args.threads, "rows": rows}, indent=1))
    print_table(rows)


if __name__ == "__main__":
    main()
