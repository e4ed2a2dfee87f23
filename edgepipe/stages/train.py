"""`edgepipe train`: best checkpoint by the task's validation score, resumable, deterministic for a seed, DDP
under torchrun."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import torch

from edgepipe.artifacts import add_artifact, new_manifest
from edgepipe.checkpoint import load_model, load_state, resolve_checkpoint, save_state
from edgepipe.data import Dataset, load_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.models import build_model, classifier_of, initialize, is_registry_model
from edgepipe.progress import say
from edgepipe.recipe import Recipe, recipe_to_dict
from edgepipe.run import TRAIN
from edgepipe.stages.frame import StageFrame
from edgepipe.tasks import task_named
from edgepipe.training import (
    FitOptions,
    distributed_from_env,
    fit,
    frozen_backbone,
    pick_device,
    score,
    seed_everything,
)
from edgepipe.trust import trusting


def model_spec(recipe: Recipe, dataset: Dataset) -> dict[str, Any]:
    return {"name": recipe.model.name, "params": recipe.model.params, "task": recipe.task,
            "input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes}


def dataset_record(recipe: Recipe, dataset: Dataset) -> dict[str, Any]:
    """What later stages need to reload the same splits, and what `infer` needs for raw images."""
    return {"config": recipe.dataset.model_dump(mode="json"), "fingerprint": dataset.fingerprint(),
            "labels": dataset.labels, "preprocessing": dataset.preprocessing,
            "sizes": {"train": len(dataset.train), "val": len(dataset.val), "test": len(dataset.test)},
            "layout": dataset.layout, "split_sha256": dataset.split_hashes()}


def _transfer_weights(model: torch.nn.Module, source: str) -> dict[str, Any]:
    """Copy every tensor whose name and shape match (a new classifier for new classes stays fresh)."""
    source_model, _ = load_model(resolve_checkpoint(Path(source)))
    source_state = source_model.state_dict()
    target_state = model.state_dict()
    copied = {k: v for k, v in source_state.items() if k in target_state and target_state[k].shape == v.shape}
    if not copied:
        raise EdgepipeError(f"train.init_from {source}: no weights match this model's layer names and shapes")
    target_state.update(copied)
    model.load_state_dict(target_state)
    return {"source": str(source), "copied_tensors": len(copied), "total_tensors": len(target_state)}


def train(recipe: Recipe, out: Path, *, resume: bool = False, reuse: bool = False) -> Path:
    """Train the recipe's model; write ``out`` (a stage dir) with model.pt and manifest.json."""
    with trusting([recipe.model.name]):  # the user's recipe names it: its manifests may rebuild it
        return _train(recipe, out, resume=resume, reuse=reuse)


def _train(recipe: Recipe, out: Path, *, resume: bool, reuse: bool) -> Path:
    out = Path(out)
    frame = StageFrame(TRAIN, out)
    dataset = load_dataset(recipe.dataset)
    task = task_named(recipe.task, dataset.preprocessing)
    spec = model_spec(recipe, dataset)
    config = {"model": recipe.model.model_dump(mode="json"), "dataset": recipe.dataset.model_dump(mode="json"),
              "train": recipe.train.model_dump(mode="json"), **({"task": recipe.task} if recipe.task != "classification"
                                                                else {})}
    parents = {"dataset": dataset.fingerprint()}
    manifest = new_manifest(TRAIN, config, parents)
    if frame.up_to_date(manifest, reuse=reuse):
        return out

    device = pick_device(recipe.train.device)
    dist = distributed_from_env(device)
    seed_everything(recipe.train.seed)
    model = build_model(spec)
    if not is_registry_model(recipe.model.name):  # torchvision and timm initialize their models their own way
        initialize(model, recipe.model.init)
    transfer = None
    if recipe.model.weights:
        from edgepipe.models.backbones import describe_load, load_pretrained

        transfer = load_pretrained(model, Path(recipe.model.weights), recipe.model.name)
        say(f"train: pretrained {describe_load(transfer)}")
    if recipe.train.init_from:
        transfer = _transfer_weights(model, recipe.train.init_from)

    # Per-epoch state lives beside the final dir so an interrupted run can resume (--resume).
    partial = out.parent / f".{out.name}.partial"
    resume_state, start_epoch = None, 0
    if resume and (partial / "last.pt").is_file():
        state = load_state(partial / "last.pt")
        if state.get("inputs_key") != manifest.inputs_key:
            raise EdgepipeError(f"{partial}: interrupted run was for a different recipe; delete it or drop --resume")
        model.load_state_dict(state["model"])
        if "torch_rng" in state:  # dropout masks continue as if training had never stopped
            torch.set_rng_state(state["torch_rng"])
        resume_state, start_epoch = state["fit"], int(state["epoch"]) + 1
        say(f"train: resuming at epoch {start_epoch + 1}")
    partial.mkdir(parents=True, exist_ok=True)

    def checkpoint_epoch(epoch: int, fit_state: dict, trained: torch.nn.Module) -> None:
        if dist.is_main:
            save_state({"inputs_key": manifest.inputs_key, "epoch": epoch, "model": trained.state_dict(),
                        "fit": fit_state, "torch_rng": torch.get_rng_state()}, partial / "last.pt")

    classifier = classifier_of(model)
    freeze = frozen_backbone(model, classifier) if recipe.train.freeze_backbone else contextlib.nullcontext()
    with freeze:
        result = fit(model, dataset.train, dataset.val, recipe.train, task,
                     FitOptions(device=device, dist=dist, on_epoch_end=checkpoint_epoch, start_epoch=start_epoch,
                                optimizer_state=resume_state, backbone_lr=recipe.train.backbone_lr))

    if dist.enabled:
        torch.distributed.barrier()
    if not dist.is_main:
        return out
    model.cpu()  # artifacts are saved and checked on the CPU, wherever training ran
    cpu = torch.device("cpu")
    val_score, test_score = score(model, dataset.val, cpu, task), score(model, dataset.test, cpu, task)

    def reloads(tmp: Path) -> None:  # check before trusting: the saved file reloads to the same score
        reloaded, _ = load_model(tmp)
        if abs(score(reloaded, dataset.val, cpu, task) - val_score) > 1e-9:
            raise RuntimeError("saved checkpoint does not reproduce the validation score")

    with frame.writing(manifest, check=reloads) as tmp:
        save_state({"model": {k: v.cpu() for k, v in model.state_dict().items()}}, tmp / "model.pt")
        manifest.model = spec
        manifest.dataset = dataset_record(recipe, dataset)
        manifest.recipe = recipe_to_dict(recipe)
        manifest.device = str(device)
        manifest.world_size = dist.world_size
        manifest.metrics = {
            "metric": task.metric, "val": val_score, "test": test_score, "best_epoch": result.best_epoch,
            "params": sum(p.numel() for p in model.parameters()), "history": result.history,
        }
        if transfer:
            manifest.transfer = {**transfer, "freeze_backbone": recipe.train.freeze_backbone}
        add_artifact(manifest, tmp, "model.pt", name="original", fmt="torch", precision="fp32")
    shutil.rmtree(partial, ignore_errors=True)
    say(f"train: {task.metric_label} val {task.format_score(val_score)}  test {task.format_score(test_score)}  "
        f"(best epoch {result.best_epoch}) → {out}")
    return out

