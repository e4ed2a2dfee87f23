"""Bench's report rows: one per (artifact, runtime, batch size), with latency percentiles from every repeat, the
runtime setting, memory, size, complexity, the pair's score, and speedups against the original of the same run."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepipe.bench.rounds import Measured
from edgepipe.timing import summarize


def _spread_pct(per_repeat: list[np.ndarray]) -> float:
    p50s = [float(np.percentile(samples, 50)) for samples in per_repeat]
    return 0.0 if len(p50s) < 2 else (max(p50s) - min(p50s)) / float(np.median(p50s)) * 100.0


def latency_fields(per_repeat: list[np.ndarray], batch: int) -> dict[str, Any]:
    latency = summarize(np.concatenate(per_repeat), batch)
    return {"latency_ms": {"p50": latency.p50_ms, "p90": latency.p90_ms, "p99": latency.p99_ms,
                           "mean": latency.mean_ms},
            "throughput_per_s": latency.throughput_per_s, "iters": latency.iters,
            "repeat_p50_ms": [float(np.percentile(s, 50)) for s in per_repeat],
            "p50_spread_pct": _spread_pct(per_repeat)}


def rows_of(item: Measured, devices: dict[int, str], evaluated: dict[str, Any], peaks: dict[str, Any]
            ) -> list[dict[str, Any]]:
    """The pair's report rows, one per batch size (``devices``: per batch size, where its runner ran)."""
    entry, rows = item.entry, []
    for size in item.sizes:
        setting, probed = item.settings[size]
        row = {"name": entry.name, "backend": item.runner.backend, "device": devices[size],
               "setting": setting.to_json() if setting else None,
               "setting_label": setting.label if setting else None,
               # tuned: a setting other than the whole thread budget won the probe
               "setting_tuned": bool(probed) and probed["chosen"] != next(iter(probed["p50_ms"])),
               **({"setting_probe": probed} if probed else {}),
               "precision": entry.precision, "format": entry.format,
               "path": str((item.directory / entry.file).resolve()), "sha256": entry.sha256,
               "batch": size,
               **latency_fields(item.compute[size], size),
               "peak_memory_bytes": peaks.get("peaks", {}).get(str(size)),
               "device_memory_bytes": peaks.get("device_memory_bytes"),
               "size_bytes": int(entry.size_bytes or (item.directory / entry.file).stat().st_size),
               "params": item.complexity.get("params"), "macs": item.complexity.get("macs"),
               "score": evaluated.get("score"), "drop": evaluated.get("drop")}
        if "error" in peaks:
            row["memory_note"] = peaks["error"]
        elif row["setting_tuned"]:
            row["memory_note"] = f"peak memory with the runtime's default setting, not {setting.label}"
        if item.full.get(size):
            row["end_to_end"] = latency_fields(item.full[size], size)
        rows.append(row)
    return rows


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """speedup_vs_original = original p50 / artifact p50 at the same batch size, from this same run;
    ``speedup_unreliable`` says why when the timings cannot carry the ratio (bench/select.py: ratio_doubt)."""
    from edgepipe.bench.select import ratio_doubt

    originals = {r["batch"]: r for r in rows if r["name"] == "original"}
    for row in rows:
        original = originals.get(row["batch"])
        row["speedup_vs_original"] = (original["latency_ms"]["p50"] / row["latency_ms"]["p50"]
                                      if original else None)
        doubt = ratio_doubt(row, original) if original and row is not original else None
        if doubt:
            row["speedup_unreliable"] = doubt
        if original and "end_to_end" in row and "end_to_end" in original:
            row["end_to_end"]["speedup_vs_original"] = (original["end_to_end"]["latency_ms"]["p50"]
                                                        / row["end_to_end"]["latency_ms"]["p50"])


def add_notes(result: dict[str, Any], runtime_note: str | None) -> None:
    """What a reader of the timings should know first: a missing runtime, windows timed on a slow machine, load."""
    if runtime_note:
        result["notes"].append(runtime_note)
    slow = (result["steadiness"] or {}).get("windows_timed_on_a_slow_machine", 0)
    if slow:
        result["notes"].insert(0, f"{slow} of {result['steadiness']['windows']} timed windows went ahead while the "
                                  f"machine probe was over {result['steadiness']['tolerance']:.0%} slower than its "
                                  "best (a shared host): expect those artifacts' p50s to read high")
    machine = result["machine"]
    if machine.get("load_average_1min", 0) > machine.get("cpus_available", machine["cores"] or 1):
        result["notes"].insert(0, f"the machine was busy (1-min load {machine['load_average_1min']} on "
                                  f"{machine.get('cpus_available', machine['cores'])} CPUs): expect wide spreads; "
                                  "PyTorch's OpenMP pool suffers most from oversubscription")
