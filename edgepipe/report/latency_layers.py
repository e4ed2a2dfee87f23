"""Where the time goes, before and after pruning: a rich table of the slowest layers and prune/latency_layers.png.

Both read the prune manifest's ``metrics["layer_latency"]`` (edgepipe/pruning/layer_latency.py LayerProfile.as_dict
per model, plus the runtime, batch and the measured per-call floor), so the picture and the table show the same rows.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.table import Table

from edgepipe.artifacts import write_bytes_atomic

_BEFORE, _AFTER = "#1f77b4", "#ff7f0e"


def _rows(record: dict[str, Any], count: int) -> list[tuple[str, float | None, float | None, str]]:
    """(layer, ms before, ms after, op types) for the slowest ``count`` layers of either model, slowest first."""
    before = {row["name"]: row for row in (record.get("unpruned") or {}).get("layers", [])}
    after = {row["name"]: row for row in (record.get("pruned") or {}).get("layers", [])}
    names = sorted(set(before) | set(after), key=lambda name: (-max((before.get(name) or {}).get("median_ms", 0.0),
                                                                    (after.get(name) or {}).get("median_ms", 0.0)),
                                                               name))  # ties in name order: the same picture twice
    return [(name, (before.get(name) or {}).get("median_ms"), (after.get(name) or {}).get("median_ms"),
             (before.get(name) or after.get(name))["op_types"]) for name in names[:count]]


def _title(record: dict[str, Any]) -> str:
    source = (record.get("unpruned") or {}).get("source", "measured")
    return f"per-layer latency on {record['runtime']}, batch {record['batch']} ({source})"


def _overhead(profile: dict[str, Any], short: bool = False) -> str:
    """The per-call time outside every kernel of a profiled call; none in a trtexec profile."""
    if profile.get("source", "measured") != "measured":  # a trtexec profile times layers, not calls
        return "n/a" if short else "n/a (a trtexec profile has layers only)"
    return f"{profile['overhead_ms']:.3f}" + ("" if short else " ms")


def latency_layers_table(record: dict[str, Any], count: int = 8) -> Table | None:
    """The slowest layers before → after, then the layers' sum, the per-call overhead and the whole call."""
    if not record.get("unpruned"):
        return None
    table = Table(title=_title(record), title_justify="left")
    for column in ("layer", "op", "unpruned ms", "pruned ms", "share before"):
        table.add_column(column, justify="left" if column in ("layer", "op") else "right")
    layers_before = record["unpruned"]["layers_ms"] or 1.0

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for name, before, after, ops in _rows(record, count):
        share = "" if before is None else f"{before / layers_before:.0%}"
        table.add_row(name, ops, ms(before), ms(after), share)
    table.add_row(f"sum of all {record['unpruned']['layer_count']} layers", "", ms(layers_before),
                  ms(record["pruned"]["layers_ms"]), "")
    table.add_row("per-call overhead (in no layer)", "", _overhead(record["unpruned"], short=True),
                  _overhead(record["pruned"], short=True), "")
    if record["unpruned"].get("profiled_call_ms") is not None:
        table.add_row("profiled call (layers + overhead + profiler)", "", ms(record["unpruned"]["profiled_call_ms"]),
                      ms(record["pruned"]["profiled_call_ms"]), "")
    table.add_row("whole call, p50 (not profiled)", "", ms(record["unpruned"]["total_ms"]),
                  ms(record["pruned"]["total_ms"]), "")
    if record.get("floor_ms") is not None:
        table.add_row("runtime's per-call floor (trivial graph)", "", ms(record["floor_ms"]), ms(record["floor_ms"]),
                      "")
    return table


def draw_latency_layers(record: dict[str, Any], path: Path, count: int = 14) -> Path:
    """Horizontal bars, before vs after, per layer (the slowest ``count``), the totals and the floor annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(record, count)
    before, after = record["unpruned"], record["pruned"]
    measured = before.get("source", "measured") == "measured"
    whole = "whole call p50" if measured else "sum of the engine's layers (proxy, not measured)"
    lines = [f"{whole}: {before['total_ms']:.3f} → {after['total_ms']:.3f} ms"
             + (f"   (target {record['target_ms']:.3f} ms)" if record.get("target_ms") is not None else ""),
             f"sum of layers: {before['layers_ms']:.3f} → {after['layers_ms']:.3f} ms",
             f"per-call overhead outside layers: {_overhead(before)} → {_overhead(after)}"]
    if not measured:  # the sum is the whole; the overhead is not in the file
        lines = [lines[0], "per-call overhead: not in a trtexec profile (layers only)"]
    if record.get("floor_ms") is not None:
        lines.append(f"{record['runtime']}'s per-call floor (trivial graph, same input): {record['floor_ms']:.3f} ms"
                     " — no pruning goes under it")
    notes_height = 0.2 * len(lines) + 0.15  # inches under the axes for the totals
    height = 1.3 + 0.42 * len(rows) + notes_height
    figure, axis = plt.subplots(figsize=(9.5, height))
    positions = range(len(rows))
    bar = 0.4
    axis.barh([p - bar / 2 for p in positions], [r[1] or 0.0 for r in rows], bar, color=_BEFORE, label="unpruned")
    axis.barh([p + bar / 2 for p in positions], [r[2] or 0.0 for r in rows], bar, color=_AFTER, label="pruned")
    axis.set_yticks(list(positions), [f"{r[0]}  ({r[3]})" for r in rows], fontsize=8)
    axis.invert_yaxis()  # slowest on top
    axis.set_xlabel("ms per call (median over profiled runs)" if measured else
                    "ms per call (trtexec's per-layer median; pruned: x the layer's kept MACs, a proxy)")
    axis.grid(True, axis="x", alpha=0.3)
    if record.get("floor_ms") is not None:
        axis.axvline(record["floor_ms"], color="0.3", linestyle=":", linewidth=1.2, label="per-call floor")
    axis.legend(loc="lower right", fontsize=9)  # slowest on top: the bottom right is where bars are shortest
    axis.set_title(_title(record), fontsize=11, loc="left")
    figure.text(0.01, 0.01, "\n".join(lines), ha="left", va="bottom", fontsize=9)
    figure.tight_layout(rect=(0, notes_height / height, 1, 1))
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=110)
    plt.close(figure)
    write_bytes_atomic(Path(path), image.getbuffer())
    return Path(path)
