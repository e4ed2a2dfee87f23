"""Peer benchmark: what a user would do without edgepipe (OpenVINO, NNCF INT8) against edgepipe's CPU pick.

    .venv/bin/python benchmarks/peer_openvino.py RUN [--rounds 5] [--seconds 1] [--threads 2] [--json FILE]

RUN is a run directory made by `edgepipe pipeline` (e.g. recipes/mnist-resnet.yaml) and benched (report.json
names the CPU pick). Needs the `peer` extra: `pip install -e '.[peer]'` (nncf, which brings nothing else that
edgepipe pins; openvino comes with it or with the `openvino` extra).

What is compared, in one process, on the same inputs:

* the original model in PyTorch eager (the baseline every ratio is against, loaded as `edgepipe bench` does);
* the peers, applied to the ORIGINAL model, because that is what a user holds without edgepipe (no pruning,
  no calibrated QDQ export, no runtime choice):
  - OpenVINO FP32: ``openvino.convert_model(torch_module, example_input=...)`` (its all-dynamic input then
    reshaped to ``[-1, C, H, W]``, the shape edgepipe's ONNX files have), compiled for the CPU with
    ``INFERENCE_NUM_THREADS`` = --threads and ``PERFORMANCE_HINT`` = ``LATENCY`` (OpenVINO's own default
    inference precision: on a CPU with AMX/AVX512-BF16 that is bf16, which the JSON records);
  - OpenVINO + NNCF INT8: NNCF's basic post-training quantization flow on that converted model,
    ``nncf.quantize(ov_model, nncf.Dataset(items, transform_fn), subset_size=300)`` with the default preset
    (``performance``: symmetric weights and activations for a CNN), the default target device and fast bias
    correction; calibration items are single samples from the run's TRAIN split (the first ``subset_size``,
    which is all NNCF reads: it takes ``islice(dataset, subset_size)``); never the test split. Compiled as above.
    API relied on: NNCF 3.x ``nncf.quantize`` (nncf/quantization/quantize_model.py, docstring: preset None ->
    ``performance`` unless ``model_type`` is transformer, subset_size default 300) and ``nncf.Dataset(data_source,
    transform_func)``; the flow is OpenVINO's "Basic Quantization Flow" page
    (https://docs.openvino.ai/2025/openvino-workflow/model-optimization-guide/quantizing-models-post-training/
    basic-quantization-flow.html) and NNCF's examples/post_training_quantization/openvino/mobilenet_v2.
* edgepipe's pick: the CPU (artifact, runtime) pair `edgepipe bench` picked, as report.json records it
  (``bench.deployable.cpu``, read the way `edgepipe infer` reads it), opened with ``open_runner(..., runtime=)``;
  plus the int8-cpu artifact on onnxruntime and on OpenVINO when they are not the pick, so the table explains
  itself.

Settings: every OpenVINO subject runs through edgepipe's OvRunner call path (so a difference is the model, not
the calling code). edgepipe's rows run, per batch size, the runtime setting bench chose for them (report.json's
rows: threads, OpenVINO throughput streams; capped at --threads). Each peer runs twice: with OpenVINO's defaults
(what a user gets) and ", best setting": the best of the same candidates by bench's own probe rule
(edgepipe/bench/settings.py), so that tuning is not counted as edgepipe's edge.

Every subject gets top-1 accuracy on the full test split, and latency p50 at each batch size from
``edgepipe.timing.interleaved_rounds`` over all subjects together (paired, rotated rounds: drift on a shared
machine hits them all alike). "× eager" is the eager p50 over the subject's p50 (above 1: faster than eager).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import read_json, read_manifest
from edgepipe.bench.allocator import keep_freed_memory
from edgepipe.bench.machine import describe, machine_info
from edgepipe.bench.settings import Setting, candidates, probe
from edgepipe.data import load_stage_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.report import REPORT
from edgepipe.run import ORIGINAL, RunLayout
from edgepipe.runners.base import Runner, infer_in_batches
from edgepipe.runners.openvino import OvRunner, openvino_version
from edgepipe.runners.select import installed_cpu_runtimes, open_runner
from edgepipe.timing import interleaved_rounds

BASELINE = "original (torch eager)"
OV_FP32 = "peer: OpenVINO FP32 (convert_model)"
OV_INT8 = "peer: OpenVINO + NNCF INT8 (PTQ)"
INT8_CPU = "int8-cpu"


class OvModelRunner(OvRunner):
    """An in-memory ``openvino.Model`` (from convert_model or nncf.quantize) behind edgepipe's runner contract,
    with edgepipe's own OpenVINO call path (so a difference is the model, not the calling code) and OpenVINO's
    own default inference precision (bf16 on an AMX/AVX512-BF16 CPU: what a user gets)."""

    precision_hint = None

    def __init__(self, model: Any, threads: int | None, hint: str = "LATENCY") -> None:
        super().__init__(Path("<in-memory openvino.Model>"), threads, hint)
        self.model = model

    def _read(self, core: Any) -> Any:
        return self.model

    def _graph_names(self) -> set[str]:
        return set()


def compiled_properties(compiled: Any) -> dict[str, str]:
    """What OpenVINO actually compiled: precision (bf16 by default on an AMX/AVX512-BF16 CPU), threads, streams."""
    found = {}
    for key in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "NUM_STREAMS"):
        try:
            value = compiled.get_property(key)
        except Exception:  # a property this OpenVINO does not report
            continue
        found[key] = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return found


def convert_original(train_dir: Path, threads: int) -> tuple[Any, tuple[int, ...], float]:
    """The original PyTorch module (the project's checkpoint loader) through openvino.convert_model, batch dynamic."""
    import openvino
    import torch

    from edgepipe.checkpoint import load_model

    torch.set_num_threads(threads)
    module, manifest = load_model(train_dir)
    shape = tuple(int(d) for d in manifest.model["input_shape"])
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation notes, from inside OpenVINO
        ov_model = openvino.convert_model(module.eval(), example_input=torch.zeros(1, *shape))
    # convert_model leaves every axis dynamic ([?,?,?,?]); fix C, H, W as the ONNX exports have them, batch dynamic
    ov_model.reshape({ov_model.inputs[0]: openvino.PartialShape([-1, *shape])})
    return ov_model, shape, time.perf_counter() - start


def nncf_int8(ov_model: Any, calibration: np.ndarray, subset_size: int) -> tuple[Any, float]:
    """NNCF's basic post-training quantization of an OpenVINO model, defaults otherwise."""
    import nncf

    dataset = nncf.Dataset(list(calibration), lambda item: item[None])  # one [C, H, W] sample -> a batch of one
    start = time.perf_counter()
    quantized = nncf.quantize(ov_model, dataset, subset_size=subset_size)
    return quantized, time.perf_counter() - start


def bench_setting(report: dict[str, Any], artifact: str, runtime: str, batch: int, threads: int) -> Setting | None:
    """The runtime setting bench chose for (artifact, runtime) at ``batch`` (report.json's bench rows), within
    this run's thread budget; None (the runtime's default, said on the terminal) when bench did not time it."""
    rows = ((report.get("bench") or {}).get("rows")) or []
    row = next((r for r in rows if (r.get("name"), r.get("backend"), r.get("batch")) == (artifact, runtime, batch)),
               None)
    setting = Setting.from_json(row.get("setting")) if row else None
    if setting is None:
        print(f"note: bench timed no {artifact} on {runtime} at batch {batch}: the runtime's default setting runs")
        return None
    return Setting(min(setting.threads or threads, threads), setting.hint)


def best_setting(make: Callable[[Setting | None], Runner], runtime: str, threads: int, batch: np.ndarray
                 ) -> Setting:
    """The peer's best setting among bench's candidates, by bench's own probe rule (bench/settings.py)."""
    found = candidates(runtime, threads, len(batch))
    with ExitStack() as stack:
        runners = {setting: stack.enter_context(make(setting)) for setting in found}
        chosen, _ = probe({setting: (lambda r=runner: r.infer(batch)) for setting, runner in runners.items()},
                          seconds=0.2, iters=20)
    return chosen


def bench_pick(report: dict[str, Any], run: Path) -> dict[str, Any]:
    """report.json's ``bench.deployable.cpu``: the artifact and runtime bench picked for this CPU."""
    pick = ((report.get("bench") or {}).get("deployable") or {}).get("cpu") or {}
    if not pick.get("name"):
        raise EdgepipeError(f"{run / REPORT} records no CPU pick (bench.deployable.cpu); run `edgepipe bench`")
    return pick


def top1(runner: Runner, split: Any) -> float:
    outputs = infer_in_batches(runner, split)
    if outputs.ndim != 2:
        raise EdgepipeError(f"outputs of shape {outputs.shape} are not class scores: top-1 needs a classifier")
    return float((outputs.argmax(1) == np.asarray(split.y)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--subset-size", type=int, default=300, help="NNCF calibration samples (train split)")
    parser.add_argument("--json", type=Path, help="write every number, per-round p50s and the machine here")
    args = parser.parse_args()
    if "openvino" not in installed_cpu_runtimes():
        raise SystemExit("OpenVINO is not installed: pip install -e '.[peer]'")
    keep_freed_memory()  # as bench does: the PyTorch baseline is not slowed by page faults
    import nncf

    layout = RunLayout(args.run)
    train = read_manifest(layout.train)
    dataset = load_stage_dataset(train)
    report = read_json(args.run / REPORT, "report (run `edgepipe bench` on the run first)")
    pick = bench_pick(report, args.run)
    artifacts = layout.artifacts()

    # subjects: label -> (make(setting) -> a runner not yet opened, facts)
    original = train.find_artifact(name=ORIGINAL)
    subjects: dict[str, tuple[Callable[[Setting | None], Runner], dict[str, Any]]] = {}
    subjects[BASELINE] = (lambda _: open_runner(layout.train, original, threads=args.threads),
                          {"role": "baseline", "artifact": ORIGINAL, "runtime": "torch"})

    ov_fp32, shape, convert_s = convert_original(layout.train, args.threads)
    calibration = dataset.train.take(min(len(dataset.train), args.subset_size))
    ov_int8, quantize_s = nncf_int8(ov_fp32, calibration, args.subset_size)
    peers = {OV_FP32: (ov_fp32, {"role": "peer", "artifact": ORIGINAL, "runtime": "openvino",
                                 "convert_s": convert_s}),
             OV_INT8: (ov_int8, {"role": "peer", "artifact": ORIGINAL, "runtime": "openvino+nncf",
                                 "quantize_s": quantize_s, "calibration": {
                                     "split": "train", "samples": len(calibration), "subset_size": args.subset_size}})}
    for label, (model, facts) in peers.items():
        subjects[label] = (lambda _, m=model: OvModelRunner(m, args.threads), facts)  # a user's defaults
        # and at the best of the same settings bench probes for edgepipe's artifacts: the tuning is not our edge
        subjects[f"{label}, best setting"] = (
            lambda setting, m=model: OvModelRunner(m, setting.threads if setting else args.threads,
                                                   setting.hint if setting else "LATENCY"),
            {**facts, "role": "peer", "setting_from": "probe"})

    found = {entry.name: (directory, entry) for directory, entry in artifacts}
    pick_runtime = pick.get("backend") or "onnxruntime"
    if pick["name"] not in found:
        raise EdgepipeError(f"bench picked {pick['name']!r}, which is not among the run's artifacts")

    def edgepipe_subject(directory: Path, entry: Any, runtime: str) -> Callable[[Setting | None], Runner]:
        return lambda setting: open_runner(directory, entry, threads=setting.threads if setting else args.threads,
                                           runtime=runtime, hint=setting.hint if setting else None)

    directory, entry = found[pick["name"]]
    if entry.format == "torch":  # the pick is the original itself: the baseline row is the pick
        pick_label = BASELINE
        subjects[BASELINE][1]["role"] = "baseline and edgepipe pick"
    else:
        pick_label = f"edgepipe pick: {entry.name} ({pick_runtime})"
        subjects[pick_label] = (edgepipe_subject(directory, entry, pick_runtime),
                                {"role": "edgepipe pick", "artifact": entry.name, "runtime": pick_runtime,
                                 "setting_from": "bench"})
    if INT8_CPU in found:
        directory, entry = found[INT8_CPU]
        for runtime in installed_cpu_runtimes():
            if (INT8_CPU, runtime) != (pick["name"], pick_runtime):
                subjects[f"edgepipe: {INT8_CPU} ({runtime})"] = (
                    edgepipe_subject(directory, entry, runtime),
                    {"role": "edgepipe artifact", "artifact": INT8_CPU, "runtime": runtime, "setting_from": "bench"})

    accuracy = {}
    for label, (make, _) in subjects.items():
        base = label.removesuffix(", best setting")
        if base in accuracy:  # a setting does not change the numbers
            accuracy[label] = accuracy[base]
            continue
        with make(None) as runner:
            accuracy[label] = top1(runner, dataset.test)
    x = dataset.test.take(min(len(dataset.test), max(args.batches)))
    rounds, settings, ov_properties = {}, {}, {}
    for batch_size in args.batches:
        batch = np.resize(x, (batch_size, *x.shape[1:])).astype(np.float32)
        settings[batch_size] = {}
        for label, (make, facts) in subjects.items():
            if facts.get("setting_from") == "bench":
                settings[batch_size][label] = bench_setting(report, facts["artifact"], facts["runtime"], batch_size,
                                                            args.threads)
            elif facts.get("setting_from") == "probe":
                settings[batch_size][label] = best_setting(make, "openvino", args.threads, batch)
        with ExitStack() as stack:
            runners = {label: stack.enter_context(make(settings[batch_size].get(label)))
                       for label, (make, _) in subjects.items()}
            rounds[batch_size] = interleaved_rounds(runners, batch, rounds=args.rounds, seconds=args.seconds)
            # what OpenVINO actually compiled (the peers' precision: bf16 by default on AMX/AVX512-BF16 CPUs)
            for label, runner in runners.items():
                if getattr(runner, "_compiled", None) is not None:
                    ov_properties.setdefault(label, {})[str(batch_size)] = compiled_properties(runner._compiled)

    p50 = {b: {label: float(np.median(times)) for label, times in rounds[b].items()} for b in args.batches}
    results = {}
    for label, (_, facts) in subjects.items():
        results[label] = {**facts, "top1": accuracy[label],
                          "latency": {str(b): {"p50_ms": p50[b][label], "x_eager": p50[b][BASELINE] / p50[b][label],
                                               "rounds_ms": rounds[b][label],
                                               **({"setting": settings[b][label].label}
                                                  if settings[b].get(label) else {})} for b in args.batches}}
        if label in ov_properties:
            results[label]["openvino_properties"] = ov_properties[label]

    machine = machine_info(args.threads)
    header = ["subject", "top-1"]
    for b in args.batches:
        header += [f"batch-{b} p50 ms", "× eager"]
    print(f"Peer benchmark on {args.run} ({len(dataset.test)} test samples; {describe(machine)}; "
          f"{args.rounds} rounds x {args.seconds} s; OpenVINO {openvino_version()}, NNCF {nncf.__version__})\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for label, row in results.items():
        cells = [label, f"{row['top1']:.2%}"]
        for b in args.batches:
            setting = settings[b].get(label)
            cells += [f"{row['latency'][str(b)]['p50_ms']:.3f}" + (f" ({setting.short})" if setting else ""),
                      f"{row['latency'][str(b)]['x_eager']:.2f}×"]
        print("| " + " | ".join(cells) + " |")

    reduced = {label: next(iter(per_batch.values()))["INFERENCE_PRECISION_HINT"]
               for label, per_batch in ov_properties.items()
               if next(iter(per_batch.values())).get("INFERENCE_PRECISION_HINT", "f32") != "f32"}
    if reduced:
        shown = "; ".join(f"{label}: {precision}" for label, precision in reduced.items())
        print(f"\nOpenVINO's CPU inference precision (its default, not set here) was not f32 for: {shown}")

    print("\n(1t: one thread; 2t+tp: OpenVINO throughput streams, the batch split across them; the setting each "
          "edgepipe row ran is bench's choice for that batch, each 'best setting' peer's the same probe's)")
    peers = [label for label, (_, facts) in subjects.items() if facts["role"] in ("baseline", "peer")]
    versus, parts, best_names = {}, [], []
    for b in args.batches:
        best = min(peers, key=lambda label: p50[b][label])
        ratio = p50[b][best] / p50[b][pick_label]
        paired = [peer / mine for peer, mine in zip(rounds[b][best], rounds[b][pick_label], strict=True)]
        versus[str(b)] = {"best_peer": best, "x": ratio, "paired_round_ratios": paired}
        parts.append(f"{ratio:.2f}× at batch {b}")
        best_names.append(f"{best} at batch {b}, paired rounds {min(paired):.2f}-{max(paired):.2f}×")
    print(f"\nedgepipe pick: {pick['name']} on {pick_runtime} "
          f"(bench picked it at batch {pick.get('batch')}: {pick.get('reason', '')})")
    print(f"top-1: NNCF INT8 {accuracy[OV_INT8]:.2%}, OpenVINO FP32 {accuracy[OV_FP32]:.2%}, eager "
          f"{accuracy[BASELINE]:.2%}, the pick {accuracy[pick_label]:.2%} ({len(dataset.test)} test samples)")
    print("best peer: " + "; ".join(best_names) + " (above 1: the pick is faster)")
    print("edgepipe pick vs best peer: " + ", ".join(parts))

    if args.json:
        args.json.write_text(json.dumps({
            "run": str(args.run), "settings": {"rounds": args.rounds, "seconds": args.seconds, "threads": args.threads,
                                               "batches": args.batches, "subset_size": args.subset_size},
            "machine": machine, "machine_line": describe(machine),
            "versions": {"openvino": openvino_version(), "nncf": nncf.__version__},
            "input_shape": list(shape), "test_samples": len(dataset.test), "pick": pick, "pick_label": pick_label,
            "subjects": results, "pick_vs_best_peer": versus}, indent=1))


if __name__ == "__main__":
    main()
