"""onnxruntime vs OpenVINO on one run's CPU artifacts: paired interleaved rounds, ratios against the original.

    .venv/bin/python benchmarks/cpu_runtimes.py RUN [--rounds 5] [--seconds 1] [--threads 2]

RUN is a run directory made by `edgepipe pipeline` (e.g. recipes/mnist-resnet.yaml). Every runner is timed
once per round, in a rotated order, so a slow phase of a shared machine hits them all alike; the table
shows each one's median p50, its ratio to the PyTorch original and every round's p50.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgepipe.artifacts import read_manifest
from edgepipe.bench.allocator import keep_freed_memory
from edgepipe.data import load_stage_dataset
from edgepipe.run import RunLayout
from edgepipe.runners.select import installed_cpu_runtimes, open_runner
from edgepipe.timing import interleaved_rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()
    keep_freed_memory()  # as bench does: the PyTorch baseline is not slowed by page faults
    layout = RunLayout(args.run)
    train = read_manifest(layout.train)
    x = load_stage_dataset(train).test.x
    subjects = {"original (torch)": (layout.train, train.find_artifact(name="original"), None)}
    for directory, entry in layout.artifacts():
        if entry.format == "onnx":
            for runtime in installed_cpu_runtimes():
                subjects[f"{entry.name} ({runtime})"] = (directory, entry, runtime)
    table = {}
    for batch_size in args.batches:
        batch = np.resize(x, (batch_size, *x.shape[1:])).astype(np.float32)
        runners = {label: open_runner(d, e, threads=args.threads, runtime=r) for label, (d, e, r) in subjects.items()}
        for runner in runners.values():
            runner.__enter__()
        try:
            rounds = interleaved_rounds(runners, batch, rounds=args.rounds, seconds=args.seconds)
        finally:
            for runner in runners.values():
                runner.__exit__(None, None, None)
        p50 = {label: float(np.median(times)) for label, times in rounds.items()}
        table[batch_size] = {label: {"p50_ms": p50[label], "x_original": p50["original (torch)"] / p50[label],
                                     "rounds_ms": rounds[label]} for label in p50}
        print(f"batch {batch_size}")
        for label, row in sorted(table[batch_size].items(), key=lambda item: item[1]["p50_ms"]):
            shown = " ".join(f"{t:.3f}" for t in row["rounds_ms"])
            print(f"  {label:34s} {row['p50_ms']:9.3f} ms  {row['x_original']:6.2f}x  rounds: {shown}")
    (args.run / "cpu_runtimes.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
