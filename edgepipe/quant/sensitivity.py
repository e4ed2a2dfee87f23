"""Accuracy-aware fallback: per-layer sensitivity, then keep the most sensitive layers in floating point.

Sensitivity of a layer = the task's validation score lost (top-1 points, PSNR dB) when *only that layer* is
quantized (the textbook
definition; each probe is a cheap quantize_static from the saved ranges plus one pass over the val
split, affordable for the models edgepipe targets). Layers are then excluded greedily, most sensitive
first, until every INT8 track is within the budget; if excluding all of them still does not meet it,
that is a clear failure, not a silent FP32 model labelled INT8.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgepipe.errors import EdgepipeError

# (nodes_to_quantize or None for all, nodes_to_exclude) -> the drop in the task's unit (worst track)
DropProbe = Callable[[list[str] | None, list[str]], float]


@dataclass
class FallbackResult:
    excluded: list[str]
    drop: float
    table: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)


def layer_sensitivity(layers: list[tuple[str, str]], probe: DropProbe) -> list[dict]:
    """One row per quantizable layer: its drop when only it is quantized, most sensitive first."""
    table = [{"node": name, "op": op, "drop_alone": round(probe([name], []), 4)} for name, op in layers]
    return sorted(table, key=lambda row: -row["drop_alone"])


def fit_budget(layers: list[tuple[str, str]], probe: DropProbe, max_drop: float, full_drop: float,
               unit: str = "pts") -> FallbackResult:
    """Exclude the most sensitive layers until the drop is within ``max_drop``; raise when no mix meets it."""
    table = layer_sensitivity(layers, probe)
    excluded: list[str] = []
    steps = [{"excluded": [], "drop": round(full_drop, 4)}]
    for row in table:
        excluded.append(row["node"])
        drop = probe(None, list(excluded))
        steps.append({"excluded": list(excluded), "drop": round(drop, 4)})
        if drop <= max_drop and len(excluded) < len(layers):
            return FallbackResult(excluded, drop, table, steps)
    # Only mixes that still hold INT8 count: every layer in float is the FP32 model, not a quantized one.
    best = min((s for s in steps if len(s["excluded"]) < len(layers)), key=lambda s: s["drop"])
    raise EdgepipeError(
        f"no INT8 mix meets the budget of {max_drop:.2f} {unit}: all layers quantized lose {full_drop:.2f}, "
        f"the best mix that still has INT8 ({len(best['excluded'])} of {len(layers)} layers kept in float) loses "
        f"{best['drop']:.2f}; raise --max-drop, try --method entropy or percentile, or --qat"
    )
