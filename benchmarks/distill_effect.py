"""Does distillation from the unpruned model help the pruning fine-tune? Same pruned model, with and without it.

    .venv/bin/python benchmarks/distill_effect.py [--recipe recipes/mnist-resnet.yaml] [--seeds 0 1 2]
        [--train-epochs 5] [--ratio 0.7 | --target-macs 0.2] [--finetune-epochs 3] [--work DIR] [--train-only]

For each seed: train the recipe's model (train.seed = seed, train.epochs shortened to save CPU) once, then prune it
twice with the same pruning (same ratio, same importance, same fine-tune seed and lr) and fine-tune with
``distill: off`` and ``distill: on``. Prints val/test score after the fine-tune per seed and mode, the per-seed
difference (on - off) and the mean ± sd over seeds; writes WORK/distill_effect.json. Stages already in WORK are
reused (the train stage by its manifest), so a second run only re-prunes what changed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def recipe_for(path: Path, seed: int, train_epochs: int):
    from edgepipe.recipe import load_recipe

    recipe = load_recipe(path)
    return recipe.model_copy(update={"train": recipe.train.model_copy(update={"seed": seed, "epochs": train_epochs})})


def prune_config(recipe, args, distill: str):
    from edgepipe.recipe import PruneConfig

    base = recipe.prune.model_dump() if recipe.prune is not None else {}
    target = {"ratio": args.ratio, "target_macs": None} if args.ratio else {"target_macs": args.target_macs,
                                                                            "ratio": None}
    return PruneConfig.model_validate({**base, **target, "finetune_epochs": args.finetune_epochs,
                                       "distill": distill})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes/mnist-resnet.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-epochs", type=int, default=5)
    parser.add_argument("--target-macs", type=float, default=None)
    parser.add_argument("--ratio", type=float, default=0.7)  # round_to 16 keeps >= 13 % of MACs: 0.1 is refused
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgepipe-distill-effect"))
    parser.add_argument("--train-only", action="store_true", help="train the seeds' models and stop")
    parser.add_argument("--modes", nargs="+", choices=["off", "on"], default=["off", "on"],
                        help="prune only with these (two processes can share the work; a last run reuses both)")
    args = parser.parse_args()

    from edgepipe.artifacts import read_manifest
    from edgepipe.stages.context import run_context
    from edgepipe.stages.prune import prune
    from edgepipe.stages.train import train

    rows = []
    for seed in args.seeds:
        recipe = recipe_for(args.recipe, seed, args.train_epochs)
        run = args.work / f"{recipe.name}-seed{seed}"
        train(recipe, run / "train", reuse=True)
        if args.train_only:
            continue
        context = run_context(run, recipe=recipe)
        for mode in args.modes:
            out = prune(run / "train", run / f"prune-distill-{mode}", prune_config(recipe, args, mode), reuse=True,
                        context=context)
            score = read_manifest(out).metrics["score"]
            rows.append({"seed": seed, "distill": mode, "unpruned": score["unpruned"],
                         "before_finetune": score["before_finetune"], "after_finetune": score["after_finetune"]})
            print(f"seed {seed} distill {mode:3}: val {score['after_finetune']['val']:.4f} "
                  f"test {score['after_finetune']['test']:.4f} (unpruned val {score['unpruned']['val']:.4f})",
                  flush=True)
    if args.train_only or len(args.modes) < 2:
        return
    summary = {}
    for split in ("val", "test"):
        gains = [on["after_finetune"][split] - off["after_finetune"][split]
                 for off, on in zip(rows[0::2], rows[1::2], strict=True)]
        per_mode = {mode: [r["after_finetune"][split] for r in rows if r["distill"] == mode] for mode in ("off", "on")}
        summary[split] = {
            **{mode: {"mean": statistics.mean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0}
               for mode, v in per_mode.items()},
            "gain_on_minus_off": {"per_seed": gains, "mean": statistics.mean(gains),
                                  "sd": statistics.stdev(gains) if len(gains) > 1 else 0.0}}
        print(f"{split}: off {summary[split]['off']['mean']:.4f} ± {summary[split]['off']['sd']:.4f}  "
              f"on {summary[split]['on']['mean']:.4f} ± {summary[split]['on']['sd']:.4f}  "
              f"gain {summary[split]['gain_on_minus_off']['mean']:+.4f} ± "
              f"{summary[split]['gain_on_minus_off']['sd']:.4f}")
    (args.work / "distill_effect.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                                "rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
