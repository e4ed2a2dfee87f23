"""Pick the deployable artifact: per target, the fastest one within the task's budget, with a one-line reason.

"Fastest" is the compute-only p50 latency at the recipe's deployment batch size, measured in the same
bench run as every other artifact. INT8 is not always faster (e.g. symmetric-activation QDQ on an
x86 CPU without VNNI), so nothing is assumed: the measurement decides. Artifacts whose p50s are within
TIE of the fastest are a tie on a shared machine (repeats of one artifact differ by a few percent); among
them the smallest file wins, which is what an edge device with little storage and memory would pick. When the
fastest row's own repeats disagree by more than TIE, the tie widens to that spread (up to TIE_MAX): a difference
the measurement cannot resolve does not decide the pick (on a 2-core VM whose repeats disagreed by 37-67 %, a
5 % tie picked the FP32 and then the FP16 graph over an INT8 one that paired rounds then timed 1.6-2x faster).
"""

from __future__ import annotations

from typing import Any

CPU_BACKENDS = ("torch", "onnxruntime", "openvino")
TIE = 0.05
TIE_MAX = 0.5  # however noisy the run, a row twice as slow as the fastest is never a tie
SPREAD_LIMIT = 10.0  # % between repeats' p50s: beyond it, the machine changed speed during the run
E2E_SLACK = 0.02  # end to end does more work than compute alone; a p50 below compute by more than this is drift


def ratio_doubt(*rows: dict[str, Any]) -> str | None:
    """Why a latency ratio between these rows is not to be taken as fact, or None: their repeats disagree by
    more than SPREAD_LIMIT, or a row's end-to-end p50 (which includes the compute) came out below its compute p50
    (the machine's speed changed between the windows)."""
    spread, row = max(((r.get("p50_spread_pct") or 0.0, r) for r in rows), key=lambda item: item[0])
    if spread > SPREAD_LIMIT:  # the worst of the rows: the one that makes the ratio unreliable
        return f"{row['name']} ({row['backend']}) repeats disagree by {spread:.0f} %"
    for row in rows:
        e2e = (row.get("end_to_end") or {}).get("latency_ms", {}).get("p50")
        if e2e is not None and e2e < row["latency_ms"]["p50"] * (1 - E2E_SLACK):
            return (f"{row['name']} ({row['backend']}) end to end ({e2e:.3g} ms) timed below its compute alone "
                    f"({row['latency_ms']['p50']:.3g} ms)")
    return None


def _ratio(text: str, *rows: dict[str, Any]) -> str:
    doubt = ratio_doubt(*rows)
    return text if doubt is None else f"{text} (unreliable: {doubt})"


def _closest_batch(rows: list[dict[str, Any]], batch: int) -> int | None:
    sizes = sorted({row["batch"] for row in rows})
    return min(sizes, key=lambda size: (abs(size - batch), size)) if sizes else None


def _label(row: dict[str, Any]) -> str:
    setting = f", {row['setting_label']}" if row.get("setting_tuned") else ""
    return f"{row['name']} ({row['backend']} {row['precision']}{setting})"


def pick_for(rows: list[dict[str, Any]], *, batch: int, max_drop: float, target: str, unit: str = "pts"
             ) -> dict[str, Any]:
    """The fastest row within budget at ``batch`` (or the closest benched batch; a tie within TIE goes to the
    smallest file), and why."""
    chosen_batch = _closest_batch(rows, batch)
    if chosen_batch is None:
        return {"target": target, "name": None, "reason": "no artifact was benchmarked for this target"}
    at_batch = sorted((r for r in rows if r["batch"] == chosen_batch), key=lambda r: r["latency_ms"]["p50"])
    known = [r for r in at_batch if r.get("drop") is not None]
    eligible = [r for r in known if r["drop"] <= max_drop] if known else at_batch
    batch_note = "" if chosen_batch == batch else f" (deploy batch {batch} not benched; closest is {chosen_batch})"
    if not eligible:
        best = known[0]
        return {"target": target, "name": None, "batch": chosen_batch,
                "reason": f"no artifact within the {max_drop} {unit} budget; the fastest, {_label(best)}, "
                          f"drops {best['drop']:.2f} {unit}{batch_note}"}
    fastest_p50 = eligible[0]["latency_ms"]["p50"]
    noise = min(TIE_MAX, (eligible[0].get("p50_spread_pct") or 0.0) / 100.0)
    margin = max(TIE, noise)
    tied = [r for r in eligible if r["latency_ms"]["p50"] <= fastest_p50 * (1 + margin)]
    best = min(tied, key=lambda r: (r.get("size_bytes") or 0, r["latency_ms"]["p50"]))
    eligible = [best, *(r for r in eligible if r is not best)]
    p50 = best["latency_ms"]["p50"]
    parts = [f"{_label(best)}: fastest within budget at batch {chosen_batch}{batch_note}, p50 {p50:.3g} ms"]
    if len(tied) > 1:
        others = ", ".join(f"{_label(r)} {r['latency_ms']['p50']:.3g} ms, "
                           f"{(r.get('size_bytes') or 0) / 1024:.0f} KiB" for r in tied if r is not best)
        parts[0] = (f"{_label(best)}: smallest file ({(best.get('size_bytes') or 0) / 1024:.0f} KiB) among the "
                    f"artifacts within {margin:.0%} of the fastest p50 at batch {chosen_batch}{batch_note}"
                    + (f", the fastest's own repeats disagreeing by {noise:.0%}" if margin > TIE else "")
                    + f" (p50 {p50:.3g} ms; tied: {others})")
    elif len(eligible) > 1:
        runner_up = eligible[1]
        parts.append(_ratio(f"{runner_up['latency_ms']['p50'] / p50:.1f}x faster than {_label(runner_up)}", best,
                            runner_up))
    original = next((r for r in at_batch if r["name"] == "original"), None)
    if original is not None and original is not best and (len(eligible) < 2 or eligible[1] is not original):
        parts.append(_ratio(f"{original['latency_ms']['p50'] / p50:.1f}x faster than the original", best, original))
    if known:
        parts.append(f"drop {best['drop']:.2f} {unit} ≤ {max_drop}")
    else:
        parts.append("not evaluated (run `edgepipe eval` for the budget check)")
    faster_over_budget = [r for r in known if r not in eligible and r["latency_ms"]["p50"] < p50]
    if faster_over_budget:
        over = faster_over_budget[0]
        parts.append(f"{over['name']} is faster but drops {over['drop']:.2f} {unit}")
    return {"target": target, "name": best["name"], "backend": best["backend"],
            "precision": best["precision"], "batch": chosen_batch, "reason": "; ".join(parts),
            **({"setting": best["setting"]} if best.get("setting") else {})}


def pick_deployable(rows: list[dict[str, Any]], *, batch: int, max_drop: float, target: str | None = None,
                    engine_problem: str | None = None, unit: str = "pts") -> dict[str, dict[str, Any]]:
    """{"cpu": pick, <target>: pick}: CPU artifacts for this machine, TensorRT engines for the recipe's target."""
    picks = {"cpu": pick_for([r for r in rows if r["backend"] in CPU_BACKENDS], batch=batch,
                             max_drop=max_drop, target="cpu", unit=unit)}
    engine_rows = [r for r in rows if r["backend"] == "tensorrt"]
    engine_target = target or "gpu"
    if engine_rows:
        picks[engine_target] = pick_for(engine_rows, batch=batch, max_drop=max_drop, target=engine_target, unit=unit)
    elif target:
        why = f"TensorRT absent here ({engine_problem})" if engine_problem else "no engine in this run"
        picks[engine_target] = {"target": engine_target, "name": None,
                                "reason": f"no TensorRT engine benchmarked: {why}; build and bench on the target "
                                          f"(`edgepipe build` then `edgepipe bench` there)"}
    return picks
