"""Depth pruning on a small real run: latency and accuracy after removing the 1..N cheapest residual blocks.

    PYTHONPATH=. .venv/bin/python benchmarks/depth_pruning.py --root /tmp/depth [--model resnet] [--width 16]
        [--epochs 6] [--finetune-epochs 2] [--max-remove 4] [--width-target 0.25] [--json depth.json]

Trains (once; an existing ROOT/run/train is reused) the mnist-resnet recipe with blocks [2, 2, 2] (or the
mnist-mobilenetv2 recipe with ``--model mobilenetv2``) for ``--epochs`` on mnist5k, then runs the prune stage itself
for k = 1..N with ``remove_blocks: k`` and ``--finetune-epochs``: each run ranks the removable blocks by their val
cost alone (BatchNorm recalibrated), records the cheap proxy's (||block(x) - x|| / ||x||) Spearman rank correlation
with that cost, and times the unpruned and pruned ONNX side by side on onnxruntime (batch 1 and 64, interleaved).
``--width-target F`` adds two runs for comparison: channels only to F of the MACs, and 2 blocks + channels to F.
``--rank-only`` skips the prune runs: it prints each removable block's val cost alone and the proxy's rank correlation
with it (``--blocks 3 3 3`` gives a resnet with more removable blocks to rank).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"resnet": ("recipes/mnist-resnet.yaml", {"width": 32, "blocks": [2, 2, 2]}),
           "mobilenetv2": ("recipes/mnist-mobilenetv2.yaml", {"width_mult": 1.0})}


def _recipe(model: str, epochs: int, root: Path, resnet: dict[str, Any]):
    from edgepipe.recipe import load_recipe

    path, params = RECIPES[model]
    recipe = yaml.safe_load((REPO / path).read_text())
    recipe["model"]["params"] = {**params, **(resnet if model == "resnet" else {})}
    recipe["train"]["epochs"] = epochs
    recipe.pop("prune", None)
    written = root / "recipe.yaml"
    written.write_text(yaml.safe_dump(recipe))
    return load_recipe(written)


def _row(label: str, manifest) -> dict[str, Any]:
    metrics = manifest.metrics
    depth = metrics.get("depth") or {}
    latency = metrics["latency"]["batches"]
    return {
        "run": label, "removed": depth.get("removed", []), "macs_kept": round(metrics["macs"]["kept_fraction"], 3),
        "val_cost_alone": {name: round(cost, 2) for name, cost in depth.get("costs", {}).items()},
        "proxy_rank_correlation": (depth.get("proxy") or {}).get("rank_correlation"),
        "score": {key: {split: round(value * 100, 2) for split, value in scores.items()}
                  for key, scores in metrics["score"].items() if key in ("unpruned", "before_finetune",
                                                                          "after_finetune")},
        "latency_ms": {batch: {side: round(per_model[side]["p50_ms"], 3) for side in per_model}
                       for batch, per_model in latency.items()},
        "speedup": {batch: round(value, 2) for batch, value in metrics["speedup"].items()},
    }


def _ranking(train_dir: Path) -> dict[str, Any]:
    """Each removable block's val drop alone (BatchNorm recalibrated) and the proxy on 1, 4 and 16 batches."""
    import itertools

    import torch

    from edgepipe.artifacts import read_manifest
    from edgepipe.checkpoint import load_model
    from edgepipe.data import load_stage_dataset
    from edgepipe.pruning.channel import recalibrate_batchnorm
    from edgepipe.pruning.depth import rank_blocks, rank_correlation, residual_ratios, survey_blocks
    from edgepipe.tasks import task_of
    from edgepipe.training import score

    model, manifest = load_model(train_dir)
    dataset = load_stage_dataset(read_manifest(train_dir))
    cpu = torch.device("cpu")
    blocks = survey_blocks(model, manifest.model["input_shape"]).removable
    task = task_of(manifest)
    base = score(model, dataset.val, cpu, task)
    ranked = rank_blocks(model, blocks, lambda trial: score(trial, dataset.val, cpu, task),
                         lambda trial: recalibrate_batchnorm(trial, itertools.islice(dataset.train.batches(128), 16)))
    costs = {cost.block.name: round(100 * (base - cost.score), 2) for cost in ranked}
    result: dict[str, Any] = {"val_cost_pts": costs, "proxy": {}}
    for batches in (1, 4, 16):
        ratios = residual_ratios(model, blocks, itertools.islice(dataset.train.batches(128), batches))
        result["proxy"][batches] = {"rank_correlation": rank_correlation([costs[n] for n in ratios],
                                                                         list(ratios.values())),
                                    "ratios": {name: round(value, 3) for name, value in ratios.items()}}
    return result


def main() -> None:
    from edgepipe.artifacts import read_manifest
    from edgepipe.recipe import PruneConfig
    from edgepipe.stages.prune import prune
    from edgepipe.stages.train import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--model", choices=sorted(RECIPES), default="resnet")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--width", type=int, default=32, help="resnet stem width")
    parser.add_argument("--blocks", type=int, nargs="+", default=[2, 2, 2], help="resnet blocks per stage")
    parser.add_argument("--rank-only", action="store_true")
    parser.add_argument("--round-to", type=int, default=8, help="channel rounding of the width runs")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--max-remove", type=int, default=4)
    parser.add_argument("--width-target", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    run = args.root / "run"
    args.root.mkdir(parents=True, exist_ok=True)
    if not (run / "train" / "manifest.json").exists():
        train(_recipe(args.model, args.epochs, args.root, {"width": args.width, "blocks": args.blocks}),
              run / "train")
    if args.rank_only:
        print(json.dumps(_ranking(run / "train")))
        return
    common = {"finetune_epochs": args.finetune_epochs, "importance": "l2", "round_to": args.round_to}
    plans = [(f"depth-{k}", {"remove_blocks": k}) for k in range(1, args.max_remove + 1)]
    if args.width_target is not None:
        plans += [(f"width-{args.width_target}", {"target_macs": args.width_target}),
                  (f"depth-2+width-{args.width_target}", {"remove_blocks": 2, "target_macs": args.width_target})]
    rows = []
    for label, settings in plans:
        out = prune(run, args.root / label, PruneConfig(**common, **settings), reuse=True)
        rows.append(_row(label, read_manifest(out)))
        print(json.dumps(rows[-1]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
