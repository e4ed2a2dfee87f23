"""`edgepipe prune`: residual blocks and channels removed, or 2:4 sparsity, fine-tuned, with MACs and latency.

Depth comes first (whole identity-shortcut blocks, ranked by their cost on val: pruning/depth.py), then width on
what remains (torch-pruning), then fine-tuning; the rebuild record replays them in the same order.

Writes RUN/prune/ with model.pt (tensors only) and a manifest whose model spec carries the pruning
history (``model.rebuild``), so the narrower architecture is rebuilt from JSON on load, never unpickled.
Latency is measured, not inferred from MACs: both models are exported to ONNX and timed side by side, and profiled
per layer on the recipe's runtime at its deploy batch (prune/latency_layers.png). With a latency target the channel
ratio is searched on that runtime (pruning/latency_target.py) and re-measured after fine-tuning.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgepipe.artifacts import add_artifact, new_manifest, read_manifest
from edgepipe.data import load_stage_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.onnx_export import scored_outputs
from edgepipe.progress import say
from edgepipe.recipe import PruneConfig
from edgepipe.run import LATENCY_LAYERS_PNG, MODEL_PT, PRUNE, RunLayout, resolve
from edgepipe.rundir import scratch_dir
from edgepipe.stages.context import RunContext, open_context
from edgepipe.stages.frame import StageFrame
from edgepipe.stages.prune_steps import PruneJob, batchnorm_batches, prune_width, scores, sparsify_2_4
from edgepipe.tasks.base import constant_outputs

SPARSITY_NOTE = ("2:4 sparsity speeds up inference only in TensorRT on Ampere-class GPUs (Jetson Orin, "
                 "RTX 30xx/A100 and newer) with sparse weights enabled (`edgepipe build --sparsity`), and usually "
                 "only for layers with >= 256 channels; onnxruntime and other CPU runtimes gain nothing from it.")
# Interleaved timing rounds x seconds per model and batch size (about 5 s in all for two models, two batches).
LATENCY_ROUNDS, LATENCY_SECONDS = 5, 0.25
LAYER_RUNS = 30  # profiled runs per model for the per-layer latency (each layer's median over them)
LAYER_ROWS = 12  # the slowest layers the manifest keeps, before and after


def source_stage(source: Path) -> Path:
    """A run dir → its origin (train/, or import/ of trained weights); a train/ or prune/ stage dir, or a model.pt
    inside one, as given."""
    found = resolve(source, files=(".pt",))
    if found.kind in ("stage", "file"):
        return found.model_stage()
    return RunLayout(found.directory).require_origin(torch=True)


def _teacher(model: nn.Module, config: PruneConfig, task):
    """The unpruned model, frozen, when the fine-tune distils from it (config.distill; edgepipe.distillation)."""
    from edgepipe.distillation import teacher_for

    if config.finetune_epochs == 0:
        return None
    teacher = teacher_for(model, "prune", config.distill, config.distill_alpha, config.distill_temperature, task)
    if teacher is not None:
        say(f"prune: the fine-tune distils from the unpruned model ({task.distill_kind}, alpha {teacher.alpha:g})")
    return teacher


def _dead(model: nn.Module, dataset, samples: int = 256) -> str | None:
    """Why ``model``'s outputs on test samples do not depend on its input (edgepipe.tasks.base), or None."""
    with torch.inference_mode():
        return constant_outputs(scored_outputs(model(torch.from_numpy(dataset.test.take(samples)))))


def _base_spec(spec: dict[str, Any]) -> tuple[dict[str, Any], list, list[str]]:
    """The zoo spec without a rebuild record, and the channel history and removed blocks already applied (pruning
    a pruned model)."""
    from edgepipe.pruning.replay import REBUILD_FUNCTION

    rebuild = spec.get("rebuild")
    base = {key: value for key, value in spec.items() if key != "rebuild"}
    if not rebuild:
        return base, [], []
    if rebuild.get("function") != REBUILD_FUNCTION:
        raise EdgepipeError(f"model spec has a rebuild step from {rebuild.get('function')!r} that prune cannot "
                            "extend; prune the model before that stage")
    return base, list(rebuild["history"]), list(rebuild.get("removed_blocks", []))


def _measure(unpruned: nn.Module, pruned: nn.Module, input_shape, *, sparse_layers: list[str] | None,
             out: Path, plan=None) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """Export both models to ONNX (scratch beside ``out``), check 2:4 on the exported weights, time them; and with
    ``plan``, their per-layer latency on the plan's runtime (pruning/layer_latency.py)."""
    from edgepipe.pruning.latency_target import profile_before_after
    from edgepipe.pruning.measure import export_for_timing, side_by_side_latency
    from edgepipe.pruning.sparsity24 import onnx_weight_patterns

    with scratch_dir(out) as tmp:
        paths = {name: export_for_timing(model, input_shape, tmp / f"{name}.onnx")
                 for name, model in (("unpruned", unpruned), ("pruned", pruned))}
        onnx_check = None
        if sparse_layers is not None:
            patterns = onnx_weight_patterns(paths["pruned"])
            sparse = [p.as_dict() for p in patterns if p.sparse_2_4]
            if len(sparse) < len(sparse_layers):
                raise RuntimeError(f"exported ONNX has {len(sparse)} weights in the 2:4 pattern, expected "
                                   f"{len(sparse_layers)} ({', '.join(sparse_layers)})")
            onnx_check = {"verified_weights": len(sparse), "expected": len(sparse_layers), "weights": sparse}
        latency = side_by_side_latency(paths, input_shape, rounds=LATENCY_ROUNDS, seconds=LATENCY_SECONDS)
        layers = profile_before_after(paths, plan, rounds=max(LAYER_RUNS, LATENCY_ROUNDS), seconds=LATENCY_SECONDS) \
            if plan else {}
        sizes = {name: path.stat().st_size for name, path in paths.items()}
    latency["onnx_bytes"] = sizes
    return latency, onnx_check, layers


def prune(source: Path, out: Path, config: PruneConfig, *, reuse: bool = False,
          context: RunContext | None = None) -> Path:
    """Prune the model of ``source`` (run dir, train/ or prune/ dir) into ``out``; returns ``out``.

    Prune spends first from the run's budget against the original (``context``: the pipeline's; else opened from
    the source's manifests): its manifest records what it used on val, which quantize then no longer has."""
    from edgepipe.checkpoint import load_model, save_state
    from edgepipe.complexity import count_macs_params
    from edgepipe.pruning.channel import recalibrate_batchnorm
    from edgepipe.pruning.depth import survey_depth
    from edgepipe.pruning.latency_target import plan_latency, profile_parent, verdict
    from edgepipe.pruning.measure import speedups
    from edgepipe.pruning.replay import rebuild_record
    from edgepipe.report.latency_layers import draw_latency_layers
    from edgepipe.stages.prune_depth import check_replays, prune_depth
    from edgepipe.training import pick_device

    source, out = source_stage(source), Path(out)
    frame = StageFrame(PRUNE, out)
    source_manifest = read_manifest(source)
    spec = source_manifest.model
    if not spec:
        raise EdgepipeError(f"{source}: manifest has no model spec, so the pruned architecture could not be "
                            "rebuilt; prune a checkpoint made by `edgepipe train`")
    model_entry = source_manifest.find_artifact(fmt="torch")
    if model_entry is None:
        raise EdgepipeError(f"{source}: no PyTorch model in this stage to prune")
    manifest = new_manifest(PRUNE, config.model_dump(mode="json"),
                            {"model": model_entry.sha256, **profile_parent(config)})
    if frame.up_to_date(manifest, reuse=reuse):
        return out

    base_spec, previous_history, previous_blocks = _base_spec(spec)
    unpruned, _ = load_model(source, model_entry.file)
    survey = survey_depth(unpruned, spec, config)  # a request that cannot be met fails here, before any work
    dataset = load_stage_dataset(source_manifest)
    context = open_context(source_manifest, source, recipe=context.recipe if context else None)
    train_config, budget = context.train, context.budget
    device = pick_device(train_config.device)
    input_shape = spec["input_shape"]
    cpu = torch.device("cpu")
    plan = plan_latency(config, input_shape, rounds=LATENCY_ROUNDS, seconds=LATENCY_SECONDS)  # refusals come first

    task = context.task
    macs_before, params_before = count_macs_params(unpruned, input_shape)
    score_before = scores(unpruned, dataset, cpu, task)
    dead = _dead(unpruned, dataset)
    if dead:  # a dead model meets any budget: pruning it would hide that training failed
        raise EdgepipeError(f"{source}: {dead}; nothing was pruned (retrain it first)")
    model = copy.deepcopy(unpruned)
    # the teacher is the original, taken before depth or width pruning: every fine-tune learns from it
    job = PruneJob(spec, dataset, train_config, config, device, task, _teacher(unpruned, config, task))
    depth = None
    if config.method == "channel":
        if survey is not None:
            depth = prune_depth(model, survey, dataset, config, task,
                                lambda trial: recalibrate_batchnorm(trial, batchnorm_batches(dataset)))
            check_replays(model, base_spec, previous_history, previous_blocks + depth["removed"])
        outcome = prune_width(model, job, macs_original=macs_before, plan=plan)
        history = previous_history + outcome["history"]
        removed = previous_blocks + (depth["removed"] if depth else [])
        pruned_spec = {**base_spec, "rebuild": rebuild_record(input_shape, history, removed)}
        sparse_layers = None
    else:
        outcome = sparsify_2_4(model, job)
        pruned_spec = spec
        sparse_layers = outcome["layers"]
    model.cpu().eval()
    score_after = scores(model, dataset, cpu, task)
    dead = _dead(model, dataset)
    if dead:
        dead = dead.replace("so training failed", "so pruning went too far")
        raise EdgepipeError(f"pruning left a dead model: {dead}; nothing was written (prune less: a smaller --ratio "
                            "or more --finetune-epochs)")
    used = max(0.0, task.drop(score_before["val"], score_after["val"]))  # prune's share of the budget, on val
    macs_after, params_after = count_macs_params(model, input_shape)
    latency, onnx_check, layers = _measure(unpruned, model, input_shape, sparse_layers=sparse_layers, out=out,
                                           plan=plan)
    target = None
    if config.target_latency_ms is not None:  # re-measured after fine-tuning: the prune line says met or missed
        target = verdict(plan, layers["pruned"].total_ms, outcome["search"])

    def reloads(tmp: Path) -> None:  # check before trusting: the saved spec + tensors rebuild the same network
        reloaded, _ = load_model(tmp)
        probe = torch.from_numpy(dataset.test.take(64))
        with torch.inference_mode():
            difference = float(np.abs(scored_outputs(reloaded(probe)) - scored_outputs(model(probe))).max())
        if difference > 1e-5:
            raise RuntimeError(f"pruned checkpoint does not reload to the same model (max |diff| {difference:.2e})")

    with frame.writing(manifest, check=reloads) as tmp:
        save_state({"model": {k: v.cpu() for k, v in model.state_dict().items()}}, tmp / MODEL_PT)
        manifest.carry_from(source_manifest, source)
        manifest.model = pruned_spec
        manifest.metrics = {
            "method": config.method,
            "params": {"before": params_before, "after": params_after, "ratio": params_before / max(params_after, 1)},
            "macs": {"before": macs_before, "after": macs_after, "ratio": macs_before / max(macs_after, 1),
                     "kept_fraction": macs_after / max(macs_before, 1)},
            "file_bytes": {"before": model_entry.size_bytes, "after": (tmp / MODEL_PT).stat().st_size},
            "score": {"task": task.describe(), "unpruned": score_before,
                      "before_finetune": outcome["score_before_finetune"], "after_finetune": score_after,
                      "drop": {split: task.drop(score_before[split], score_after[split]) for split in ("val", "test")}},
            "latency": latency,
            "speedup": speedups(latency),
            "pruning": {key: value for key, value in outcome.items()
                        if key not in ("history", "score_before_finetune", "layers")},
            "budget": budget.record(used),
            "layer_latency": {**plan.as_dict(), **{name: profile.as_dict(top=LAYER_ROWS)
                                                   for name, profile in layers.items()}},
        }
        if target is not None:
            manifest.metrics["latency_target"] = target
        if depth is not None:
            manifest.metrics["depth"] = depth
        if layers:
            draw_latency_layers(manifest.metrics["layer_latency"], tmp / LATENCY_LAYERS_PNG)
        if sparse_layers is not None:
            manifest.sparsity = {"pattern": "2:4", "layers": sparse_layers, "onnx": onnx_check,
                                    "note": SPARSITY_NOTE}
        add_artifact(manifest, tmp, MODEL_PT, name="pruned", fmt="torch",
                     precision="fp32-2:4" if config.method == "2:4" else "fp32")
    metrics = manifest.metrics
    blocks = (f"{len(depth['removed'])} block{'s' if len(depth['removed']) != 1 else ''} removed "
              f"({', '.join(depth['removed'])})  ") if depth else ""
    say(f"prune: {config.method}  {blocks}MACs {metrics['macs']['ratio']:.2f}x fewer  test {task.metric_label} "
        f"{task.format_score(score_before['test'])} → {task.format_score(score_after['test'])}  "
        f"b64 speedup {metrics['speedup'].get('64', float('nan')):.2f}x → {out}")
    if target is not None:
        say(f"prune: {target['line']}")
    slower = {batch: speedup for batch, speedup in metrics["speedup"].items() if speedup < 1.0}
    if slower and config.method == "channel":  # fewer MACs, more time: say so where the user looks
        shown = ", ".join(f"{speedup:.2f}x at batch {batch}" for batch, speedup in slower.items())
        say(f"[yellow]prune: the pruned model is slower than the unpruned one on {latency['backend']} ({shown}): "
            "the time is per layer and per call, not per MAC (see the per-layer table); prune for time with "
            "--target-latency, or remove whole blocks with --remove-blocks[/yellow]")
    _say_budget(budget, used, task, len(dataset.val))
    return out


def _say_budget(budget, used: float, task, val_samples: int) -> None:
    """Prune's share of the run's budget, and a warning when it leaves quantize nothing or the val split cannot
    tell the budget from noise."""
    say(f"prune: {budget.line(used)} on val")
    if used > budget.left:
        say(f"[yellow]prune: the pruned model alone is over the run's {budget.max_drop:g} {task.unit} budget on val: "
            "every artifact made from it will fail eval; prune less (ratio, target_macs, target_latency_ms) or "
            "fine-tune longer[/yellow]")
    resolution = task.resolution(val_samples)
    if budget.max_drop < resolution:
        say(f"[yellow]prune: the {budget.max_drop:g} {task.unit} budget is finer than one val sample "
            f"({resolution:.2f} {task.unit} on {val_samples} samples): the split cannot resolve it[/yellow]")
