"""Where a run's time goes: per-layer latency of its original and pruned model on each CPU runtime and batch, beside
the runtime's fixed per-call floor (issue 30).

    .venv/bin/python benchmarks/layer_latency.py RUN [--runtime onnxruntime openvino] [--batch 1 64] [--json out.json]

RUN has a train/ (or import/) and a prune/ stage. Both models are exported as prune measures them
(``export_for_timing``) and profiled with the project's own functions (edgepipe/pruning/layer_latency.py:
``profile_models``, ``per_call_floor``): each runtime's profiler for the per-layer medians, an unprofiled interleaved
p50 for the whole call, and a trivial graph of the same input for the floor. Prints one table per runtime x batch
and a summary line: the floor's share of each model's call.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rich.console import Console


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--runtime", nargs="+", default=["onnxruntime", "openvino"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--rounds", type=int, default=30, help="profiled runs per model")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from edgepipe.checkpoint import load_model
    from edgepipe.pruning.layer_latency import per_call_floor, profile_models
    from edgepipe.pruning.measure import export_for_timing
    from edgepipe.report.latency_layers import latency_layers_table
    from edgepipe.run import PRUNE, RunLayout

    run = RunLayout(args.run)
    origin = run.require_origin(torch=True)
    unpruned, manifest = load_model(origin)
    pruned, _ = load_model(args.run / PRUNE)
    shape = manifest.model["input_shape"]
    console = Console(width=110)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        paths = {name: export_for_timing(model, shape, Path(scratch) / f"{name}.onnx")
                 for name, model in (("unpruned", unpruned), ("pruned", pruned))}
        for runtime in args.runtime:
            for batch in args.batch:
                profiles = profile_models(paths, runtime, batch, rounds=args.rounds)
                floor = per_call_floor(shape, runtime, batch)
                record = {"runtime": runtime, "batch": batch, "floor_ms": floor,
                          **{name: profile.as_dict() for name, profile in profiles.items()}}
                console.print(latency_layers_table(record, count=12))
                shares = {name: floor / profile.total_ms for name, profile in profiles.items()}
                console.print(f"{runtime} batch {batch}: floor {floor:.3f} ms = {shares['unpruned']:.0%} of the "
                              f"unpruned call ({profiles['unpruned'].total_ms:.3f} ms), {shares['pruned']:.0%} of the "
                              f"pruned call ({profiles['pruned'].total_ms:.3f} ms)\n")
                results.append(record)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
