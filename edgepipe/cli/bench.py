from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edgepipe import defaults, limits
from edgepipe.errors import EdgepipeError


class Backend(str, Enum):
    torch = "torch"
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    tensorrt = "tensorrt"


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise EdgepipeError(f"--batch must be comma-separated integers like 1,8,64 (got '{text}')") from None
    if not sizes or any(size <= 0 for size in sizes):
        raise EdgepipeError(f"--batch sizes must be positive integers (got '{text}')")
    return [limits.check_batch(size, "--batch") for size in sizes]


def _settings_file(path: Path):
    """A recipe's bench: section from a YAML/JSON file; one line naming the key when it is wrong."""
    import yaml
    from pydantic import ValidationError

    from edgepipe.recipe import BenchConfig

    if not path.is_file():
        raise EdgepipeError(f"--settings: {path} is not a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return BenchConfig.model_validate(data if data is not None else {})
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EdgepipeError(f"--settings: {path} is not YAML or JSON ({type(exc).__name__})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise EdgepipeError(f"--settings {path}: {where}: {first['msg']}") from None


def command(
    run_or_model: Annotated[Path, typer.Argument(help="Run directory, stage directory, or one .onnx / model.pt.")],
    batch: Annotated[str, typer.Option("--batch", help="Comma-separated batch sizes.")]
    = ",".join(map(str, defaults.BENCH["batch_sizes"])),
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls (and at least 0.2 s) before each timed window.")
                      ] = defaults.BENCH["warmup"],
    iters: Annotated[int, typer.Option(min=1, help="At least this many timed calls per artifact, batch size and "
                                                   "repeat.")] = defaults.BENCH["iters"],
    seconds: Annotated[float, typer.Option(min=0.01, max=3600, help="And at least this long per window (like "
                                           "trtexec --duration): what keeps sub-millisecond p50s steady.")]
    = defaults.BENCH["seconds"],
    threads: Annotated[int | None, typer.Option(min=1, help="CPU thread budget for every runtime (default: all).")
                       ] = defaults.BENCH["threads"],
    backend: Annotated[list[Backend] | None, typer.Option("--backend", help="Only these backends (repeat it).")] = None,
    repeats: Annotated[int, typer.Option(min=1, max=100, help="Interleaved rounds; the p50 spread across them is "
                                                             "reported.")] = defaults.BENCH["repeats"],
    memory: Annotated[bool, typer.Option(help="Measure peak memory per artifact in a fresh process.")]
    = defaults.BENCH["memory"],
    end_to_end: Annotated[bool, typer.Option(help="Also time preprocessing from raw uint8 input.")]
    = defaults.BENCH["end_to_end"],
    steady: Annotated[bool, typer.Option(help="Before each window, wait out a slow phase of a shared machine (a "
                                              "probe is timed; waits are reported; can take minutes).")]
    = defaults.BENCH["steady"],
    tune_settings: Annotated[bool, typer.Option(help="Per batch size, probe fewer threads and OpenVINO's throughput "
                                                     "streams; keep one only where it wins every probe round.")]
    = defaults.BENCH["tune_settings"],
    budget: Annotated[float, typer.Option("--budget", min=0, max=86400, help="Seconds the whole bench may take "
                                          "(0: no limit). Planned from a quick probe of each call; what does not "
                                          "fit is cut (repeats, window length, settings probe, scoring sample, "
                                          "memory, largest batch sizes) and said.")] = defaults.BENCH["budget_s"],
    settings: Annotated[Path | None, typer.Option("--settings", help="Take every setting from this YAML or JSON "
                                                        "file instead of the options above: the keys of a recipe's "
                                                        "bench: section (what `edgepipe pipeline` hands its fresh "
                                                        "process).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of a table.")] = False,
) -> None:
    """Latency p50/p90/p99, throughput, memory, size, params and MACs of every artifact, side by side; speedup vs
    the original measured in the same run. With a run directory, also writes report.json/.md/.png."""
    from edgepipe.cli.options import stage_config
    from edgepipe.progress import console, say
    from edgepipe.recipe import BenchConfig
    from edgepipe.report import bench_table, write_report
    from edgepipe.run import REPORT_JSON, REPORT_MD, REPORT_PNG, resolve
    from edgepipe.stages.bench import bench, missing_evaluation

    if settings is not None:
        config = _settings_file(settings)
    else:
        config = stage_config(BenchConfig, {
            "batch_sizes": parse_batch_sizes(batch), "warmup": warmup, "iters": iters, "seconds": seconds,
            "threads": threads, "backends": [b.value for b in backend] if backend else None, "repeats": repeats,
            "memory": memory, "end_to_end": end_to_end, "steady": steady, "tune_settings": tune_settings,
            "budget_s": budget or None},
            flags={"batch_sizes": "--batch"})
    run_dir = run_or_model if resolve(run_or_model).kind == "run" else None
    if run_dir is not None and missing_evaluation(run_dir):
        from edgepipe.stages.evaluate import evaluate

        say("bench: no eval results for every artifact yet; running eval first")
        write_report(run_dir, evaluation=evaluate(run_dir), summary=False)
    result = bench(run_or_model, config)
    if run_dir is not None:
        write_report(run_dir, bench=result)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    console.print(bench_table(result))
    steadiness = result.get("steadiness")
    if steadiness and (steadiness["windows_that_waited"] or steadiness["windows_timed_on_a_slow_machine"]):
        say(f"bench: waited {steadiness['seconds_waited']} s for a slow machine before "
            f"{steadiness['windows_that_waited']} of {steadiness['windows']} windows, re-timed "
            f"{steadiness['windows_retimed']}; {steadiness['windows_timed_on_a_slow_machine']} still ran slow "
            "(their p50s read high)")
    if Path(run_or_model).is_dir() and (Path(run_or_model) / REPORT_MD).is_file():
        say(f"bench: report → {Path(run_or_model) / REPORT_MD}, {REPORT_PNG}, {REPORT_JSON}")
