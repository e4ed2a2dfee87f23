"""Reproduce the README's CPU performance table from a clean clone.

    .venv/bin/python benchmarks/cpu_table.py [--recipe recipes/mnist-resnet.yaml] [--run runs/bench-mnist-resnet]
                                             [--threads 2] [--batch 1,64] [--iters 100] [--seconds 1]
                                             [--repeats 3] [--runs 2]

Trains the recipe through edgepipe's Python API when the run has no train/ stage yet (pipeline: train, export,
eval), then prunes (+ exports the pruned model) and quantizes when those stages exist in this install, evaluates
every artifact, benches them side by side (interleaved rounds, same process, same thread count) and prints a
markdown table naming the machine, the deployable pick and the speedups the README quotes. With --runs N it
runs `bench` N times and also reports how far the same artifact's p50 moves from one bench run to the next.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def prepare_run(recipe_path: Path, run: Path) -> None:
    """`edgepipe pipeline RECIPE` (train, prune, export, quantize, eval; reused when already done)."""
    from edgepipe.stages.pipeline import run_pipeline

    run_pipeline(recipe_path, run)


def floors(result: dict) -> list[str]:
    """The issue's floors, checked on the picked CPU artifact vs the original, from this one run."""
    pick = result["deployable"]["cpu"]
    lines = []
    for size, floor in ((64, 12.0), (1, 10.0)):
        row = next((r for r in result["rows"] if r["name"] == pick["name"] and r["batch"] == size), None)
        if row is None or row["speedup_vs_original"] is None:
            continue
        verdict = "meets" if row["speedup_vs_original"] >= floor else "BELOW"
        lines.append(f"- batch {size}: {pick['artifact']} is {row['speedup_vs_original']:.1f}x the original's "
                     f"throughput ({verdict} the {floor:.0f}x floor), drop {row['drop']} {result['task']['unit']}")
    lines.append(f"- largest p50 spread across repeats: {result['p50_spread_pct_max']:.1f}% of the median "
                 f"({'within' if result['p50_spread_pct_max'] <= 10 else 'OVER'} the 10% floor)")
    return lines


def across_runs(results: list[dict]) -> str:
    """The largest run-to-run p50 spread of one artifact at one batch ((max-min)/median over the bench runs)."""
    import statistics

    p50s: dict[tuple[str, int], list[float]] = {}
    for result in results:
        for row in result["rows"]:
            p50s.setdefault((row["name"], row["batch"]), []).append(row["latency_ms"]["p50"])
    spreads = {key: (max(v) - min(v)) / statistics.median(v) * 100 for key, v in p50s.items()}
    (artifact, batch), worst = max(spreads.items(), key=lambda item: item[1])
    return (f"- largest p50 spread between {len(results)} bench runs: {worst:.1f}% ({artifact}, batch {batch}; "
            f"{'within' if worst <= 10 else 'OVER'} the 10% floor)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "mnist-resnet.yaml")
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "bench-mnist-resnet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", default="1,64")
    parser.add_argument("--iters", type=int, default=100, help="at least this many timed calls per window")
    parser.add_argument("--seconds", type=float, default=1.0, help="and at least this long per window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2, help="bench runs, for the run-to-run p50 spread")
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from edgepipe.bench.machine import describe
    from edgepipe.recipe import BenchConfig
    from edgepipe.report import bench_markdown_table, write_report
    from edgepipe.stages.bench import bench
    from edgepipe.stages.evaluate import evaluate

    if args.prepare_only:
        prepare_run(args.recipe, args.run)
        write_report(args.run, evaluation=evaluate(args.run), summary=False)
        return 0
    # Train/prune/quantize/eval in a child process, so the timings start from a fresh interpreter (no thread
    # pools, allocator state or imports left over from training).
    subprocess.run([sys.executable, __file__, "--prepare-only", *sys.argv[1:]], check=True)
    # steady: a benchmark waits out a shared machine's slow phases (a library call does not, unless asked).
    results = [bench(args.run, BenchConfig(batch_sizes=[int(b) for b in args.batch.split(",")], threads=args.threads,
                                           iters=args.iters, seconds=args.seconds, repeats=args.repeats,
                                           memory=run == 0, steady=True,
                                           budget_s=None))  # the windows stated above, never cut by a budget
               for run in range(args.runs)]
    write_report(args.run, bench=results[-1])
    result = results[0]
    print(f"**{result['recipe']}** on {describe(result['machine'])}; windows of at least {args.iters} calls and "
          f"{args.seconds:g} s, {args.repeats} interleaved repeats per artifact and batch "
          "(`benchmarks/cpu_table.py`)\n")
    print(bench_markdown_table(result))
    print()
    for target, pick in result["deployable"].items():
        print(f"- deploy on {target}: {pick['reason']}")
    print("\n".join(floors(result)))
    if len(results) > 1:
        print(across_runs(results))
    for number, each in enumerate(results, 1):
        steady = each.get("steadiness") or {}
        if steady:
            print(f"- bench run {number}: waited out a slow machine before {steady['windows_that_waited']} of "
                  f"{steady['windows']} windows ({steady['seconds_waited']} s); "
                  f"{steady['windows_timed_on_a_slow_machine']} went ahead on a slow machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
