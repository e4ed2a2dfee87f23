"""report.json: the run's results for machines, merged across eval, bench and the pipeline, never stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepipe.artifacts import read_json, sha256_file, write_json_atomic
from edgepipe.run import REPORT_JSON as REPORT
from edgepipe.rundir import run_lock

# What each artifact of report.json keeps of its bench rows, per batch size.
PER_ARTIFACT_FIELDS = ("latency_ms", "throughput_per_s", "iters", "p50_spread_pct", "peak_memory_bytes",
                       "speedup_vs_original", "speedup_unreliable", "end_to_end")


def update_report(run_dir: Path, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into run_dir/report.json (eval, bench and pipeline each add their part).

    Under the run's lock: two processes merging at once would lose one's part.
    """
    with run_lock(run_dir):
        return _merge_report(Path(run_dir), patch)


def read_stored(run_dir: Path) -> dict[str, Any]:
    """report.json as this edgepipe names its keys ({} when there is none, or it is not ours). A report written
    before one key named an artifact everywhere (bench rows, skipped entries and picks said "artifact") reads as if
    written today."""
    path = Path(run_dir) / REPORT
    report = read_json(path, "report") if path.is_file() else {}
    if not isinstance(report, dict):
        return {}  # not ours to keep: the parts are made again from the artifacts
    bench = report.get("bench")
    if isinstance(bench, dict):
        picks = bench.get("deployable") if isinstance(bench.get("deployable"), dict) else {}
        for entry in [*(bench.get("rows") or []), *(bench.get("skipped") or []), *picks.values()]:
            if isinstance(entry, dict) and "artifact" in entry and "name" not in entry:
                entry["name"] = entry.pop("artifact")
    return report


def _merge_report(run_dir: Path, patch: dict[str, Any]) -> dict[str, Any]:
    path = Path(run_dir) / REPORT
    report = read_stored(run_dir)
    report.update(patch)
    if "bench" not in patch and report.get("bench") and bench_is_stale(report["bench"], Path(run_dir)):
        del report["bench"]  # timings of files that have since been rebuilt must not be reported as current
    write_json_atomic(path, report)
    return report


def bench_is_stale(bench: dict[str, Any], run_dir: Path) -> bool:
    """True when a benchmarked file is gone or differs from the one timed (its sha256 is in every row).

    Only files inside ``run_dir`` are hashed: a report.json naming a file elsewhere is stale, not followed.
    """
    current: dict[str, str | None] = {}
    root = Path(run_dir).resolve()
    for row in bench.get("rows", []) if isinstance(bench, dict) else [None]:
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            return True
        path = Path(row["path"])
        if root not in path.resolve().parents:
            return True
        if row["path"] not in current:
            current[row["path"]] = sha256_file(path) if path.is_file() else None
        if row.get("sha256") is None or current[row["path"]] != row["sha256"]:
            return True
    return False


def record_bench(run_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """report.json gets "bench" plus, per artifact, params/macs and {batch: latency...}; returns the report."""
    artifacts = read_stored(run_dir).get("artifacts", [])
    for artifact in artifacts:
        rows = [r for r in result["rows"] if r["name"] == artifact["name"]]
        if rows:
            artifact["params"], artifact["macs"] = rows[0]["params"], rows[0]["macs"]
            artifact["bench"] = {str(r["batch"]): {k: r[k] for k in PER_ARTIFACT_FIELDS if k in r} for r in rows}
    return update_report(run_dir, {"bench": result, **({"artifacts": artifacts} if artifacts else {})})
