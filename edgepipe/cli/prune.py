from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgepipe.run import MODEL_PT


def _config(options: dict[str, Any]):
    """Build the PruneConfig, turning a validation error into one line naming the option."""
    from pydantic import ValidationError

    from edgepipe.errors import EdgepipeError
    from edgepipe.recipe import PruneConfig

    try:
        return PruneConfig.model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "options"
        option = "--" + field.replace("_", "-").replace("global-pruning", "global").replace("ignore-layers", "ignore")
        message = error["msg"].removeprefix("Value error, ")
        got = "" if error.get("input") is None else f" (got {error['input']})"
        raise EdgepipeError(f"{option}: {message}{got}") from None


def _table(manifest):
    from rich.table import Table

    metrics = manifest.metrics
    accuracy, latency = metrics["accuracy"], metrics["latency"]["batches"]
    table = Table(title=f"prune ({metrics['method']}): before → after", title_justify="left")
    for column in ("", "unpruned", "pruned", "ratio"):
        table.add_column(column, justify="left" if not column else "right")

    def count(value: int) -> str:
        return f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value / 1e3:.1f} k"

    def pct(value: float) -> str:
        return f"{value:.2%}"

    table.add_row("params", count(metrics["params"]["before"]), count(metrics["params"]["after"]),
                  f"{metrics['params']['ratio']:.2f}x fewer")
    table.add_row("MACs / sample", count(metrics["macs"]["before"]), count(metrics["macs"]["after"]),
                  f"{metrics['macs']['ratio']:.2f}x fewer")
    table.add_row(MODEL_PT, f"{metrics['file_bytes']['before'] / 1024:.0f} KiB",
                  f"{metrics['file_bytes']['after'] / 1024:.0f} KiB",
                  f"{metrics['file_bytes']['before'] / max(metrics['file_bytes']['after'], 1):.2f}x smaller")
    for split in ("val", "test"):
        table.add_row(f"{split} accuracy (before fine-tune)", pct(accuracy["unpruned"][split]),
                      pct(accuracy["before_finetune"][split]), "")
        table.add_row(f"{split} accuracy", pct(accuracy["unpruned"][split]), pct(accuracy["after_finetune"][split]),
                      f"{accuracy['drop_points'][split]:+.2f} pt drop")
    threads = metrics["latency"]["threads"]
    for batch, per_model in latency.items():
        table.add_row(f"latency p50, batch {batch} (ORT CPU, {threads} threads)",
                      f"{per_model['unpruned']['p50_ms']:.2f} ms", f"{per_model['pruned']['p50_ms']:.2f} ms",
                      f"{metrics['speedup'][batch]:.2f}x faster")
    return table


def command(
    source: Annotated[Path, typer.Argument(help="Run directory, train/ or prune/ stage directory, or model.pt.")],
    method: Annotated[str, typer.Option(help="channel (remove channels) or 2:4 (sparsity).")] = "channel",
    ratio: Annotated[float | None, typer.Option(help="Fraction of channels to remove, in (0, 1).")] = None,
    target_macs: Annotated[float | None, typer.Option(help="Keep this fraction of the MACs (e.g. 0.5); the "
                                                           "channel ratio is searched.")] = None,
    importance: Annotated[str, typer.Option(help="Channel ranking: l1, l2, bn_scale or taylor.")] = "l1",
    global_pruning: Annotated[bool, typer.Option("--global", help="Rank channels across layers.")] = False,
    round_to: Annotated[int, typer.Option(min=1, help="Kept channels are a multiple of N (SIMD/tensor-core "
                                                      "friendly).")] = 8,
    ignore: Annotated[list[str] | None, typer.Option(help="Layer (module) name never pruned; repeatable.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Iterative pruning steps, each followed by fine-tuning.")] = 1,
    finetune_epochs: Annotated[int, typer.Option(min=0, help="Fine-tuning epochs after each step (0: none).")] = 3,
    finetune_lr: Annotated[float | None, typer.Option(help="Fine-tuning lr (default: train lr/10).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output stage dir (default: RUN/prune).")] = None,
) -> None:
    """Prune a trained model (remove channels, or 2:4 sparsity), fine-tune it, measure MACs and latency side by side."""
    from edgepipe.artifacts import read_manifest
    from edgepipe.progress import console
    from edgepipe.run import PRUNE
    from edgepipe.stages.prune import SPARSITY_NOTE, prune, source_stage

    config = _config({"method": method, "ratio": ratio, "target_macs": target_macs, "importance": importance,
                      "global_pruning": global_pruning, "round_to": round_to, "ignore_layers": ignore or [],
                      "steps": steps, "finetune_epochs": finetune_epochs, "finetune_lr": finetune_lr})
    stage = source_stage(source)
    result = prune(stage, out or stage.parent / PRUNE, config)
    manifest = read_manifest(result)
    console.print(_table(manifest))
    if config.method == "2:4":
        console.print(f"{len(manifest.sparsity['layers'])} layers in the 2:4 pattern (checked on the exported "
                      f"ONNX weights). {SPARSITY_NOTE}")
    console.print(f"pruned model: {result}  (next: edgepipe export {result})")
