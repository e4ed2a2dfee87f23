from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgepipe import defaults
from edgepipe.cli.shared_options import DistillAlpha, DistillMode, DistillTemperature


def command(
    source: Annotated[Path, typer.Argument(help="Run directory, train/ or prune/ stage directory, or model.pt.")],
    method: Annotated[str, typer.Option(help="channel (remove channels) or 2:4 (sparsity).")]
    = defaults.PRUNE["method"],
    ratio: Annotated[float | None, typer.Option(help="Fraction of channels to remove, in (0, 1).")]
    = defaults.PRUNE["ratio"],
    target_macs: Annotated[float | None, typer.Option(help="Keep this fraction of the MACs (e.g. 0.5); the "
                                                           "channel ratio is searched.")]
    = defaults.PRUNE["target_macs"],
    remove_blocks: Annotated[list[str] | None, typer.Option(
        help="Depth pruning first: N removes the N residual blocks that cost least on val; a block (module) name "
             "removes that block (repeatable). Identity-shortcut blocks only.")] = defaults.PRUNE["remove_blocks"],
    target_latency: Annotated[float | None, typer.Option(help="Reach this p50 latency (ms per call) on --runtime at "
                                                              "--batch: the least pruning that measures under it.")]
    = defaults.PRUNE["target_latency_ms"],
    batch: Annotated[int, typer.Option(help="Deploy batch: the latency target and per-layer latency are timed at "
                                            "it.")] = defaults.PRUNE["latency_batch"],
    runtime: Annotated[str, typer.Option(help="Runtime that will run the model: onnxruntime, openvino or tensorrt "
                                              "(tensorrt: a --latency-profile from trtexec, a proxy).")]
    = defaults.PRUNE["latency_runtime"],
    latency_profile: Annotated[str | None, typer.Option(help="`trtexec --exportProfile` JSON of the unpruned "
                                                             "model, made on the device (with --runtime tensorrt).")]
    = defaults.PRUNE["latency_profile"],
    importance: Annotated[str, typer.Option(help="Channel ranking: l1, l2, bn_scale or taylor.")]
    = defaults.PRUNE["importance"],
    global_pruning: Annotated[bool, typer.Option("--global", help="Rank channels across layers.")]
    = defaults.PRUNE["global_pruning"],
    round_to: Annotated[int, typer.Option(min=1, help="Kept channels are a multiple of N (SIMD/tensor-core "
                                                      "friendly).")] = defaults.PRUNE["round_to"],
    ignore: Annotated[list[str] | None, typer.Option(help="Layer (module) name never pruned; repeatable.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Iterative pruning steps, each followed by fine-tuning.")]
    = defaults.PRUNE["steps"],
    finetune_epochs: Annotated[int, typer.Option(min=0, help="Fine-tuning epochs after each step (0: none).")]
    = defaults.PRUNE["finetune_epochs"],
    finetune_lr: Annotated[float | None, typer.Option(help="Fine-tuning lr (default: train lr/10).")]
    = defaults.PRUNE["finetune_lr"],
    distill: DistillMode = defaults.PRUNE["distill"],
    distill_alpha: DistillAlpha = defaults.PRUNE["distill_alpha"],
    distill_temperature: DistillTemperature = defaults.PRUNE["distill_temperature"],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output stage dir (default: RUN/prune).")] = None,
) -> None:
    """Prune a trained model (remove residual blocks and channels, or 2:4 sparsity), fine-tune it, measure MACs and
    latency side by side."""
    from edgepipe.artifacts import read_manifest
    from edgepipe.cli.options import stage_config
    from edgepipe.progress import console
    from edgepipe.recipe import PruneConfig
    from edgepipe.report import prune_table
    from edgepipe.report.latency_layers import latency_layers_table
    from edgepipe.run import PRUNE
    from edgepipe.stages.prune import SPARSITY_NOTE, prune, source_stage

    config = stage_config(PruneConfig, {
        "method": method, "ratio": ratio, "target_macs": target_macs, "remove_blocks": _blocks(remove_blocks),
        "importance": importance,
        "global_pruning": global_pruning, "round_to": round_to, "ignore_layers": ignore or [], "steps": steps,
        "finetune_epochs": finetune_epochs, "finetune_lr": finetune_lr, "target_latency_ms": target_latency,
        "latency_batch": batch, "latency_runtime": runtime, "latency_profile": latency_profile, "distill": distill,
        "distill_alpha": distill_alpha, "distill_temperature": distill_temperature},
        flags={"global_pruning": "--global", "ignore_layers": "--ignore", "target_latency_ms": "--target-latency",
               "latency_batch": "--batch", "latency_runtime": "--runtime"})
    stage = source_stage(source)
    result = prune(stage, out or stage.absolute().parent / PRUNE, config)
    manifest = read_manifest(result)
    console.print(prune_table(manifest.metrics))
    layers = latency_layers_table(manifest.metrics.get("layer_latency") or {})
    if layers is not None:
        console.print(layers)
    if "latency_target" in manifest.metrics:
        console.print(manifest.metrics["latency_target"]["line"])
    if config.method == "2:4":
        console.print(f"{len(manifest.sparsity['layers'])} layers in the 2:4 pattern (checked on the exported "
                      f"ONNX weights). {SPARSITY_NOTE}")
    console.print(f"pruned model: {result}  (next: edgepipe export {result})")


def _blocks(values: list[str] | None) -> int | list[str] | None:
    """--remove-blocks 2 (a count) or --remove-blocks NAME [--remove-blocks NAME ...] (names)."""
    if not values:
        return None
    return int(values[0]) if len(values) == 1 and values[0].isdigit() else values
