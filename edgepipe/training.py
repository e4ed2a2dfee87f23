"""The training loop, shared by `train`, pruning fine-tunes and quantization-aware training.

Every epoch is a seeded permutation cut into batches; a split turns each batch of indices into inputs
(:meth:`Split.train_batches`: array indexing for the in-memory sets, a DataLoader with worker processes and
torchvision augmentation for image folders), which keeps runs reproducible for a seed. Under `torchrun`
(WORLD_SIZE > 1) each rank takes its shard of every epoch's permutation and gradients are averaged by
DistributedDataParallel.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edgepipe.data.base import Split, eval_batch_size
from edgepipe.distillation import DistillMix, Teacher
from edgepipe.errors import EdgepipeError
from edgepipe.onnx_export import scored_outputs
from edgepipe.recipe import TrainConfig
from edgepipe.tasks import Task


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_from_env(device: torch.device) -> Distributed:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size())


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device(f"cuda:{local_rank}")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise EdgepipeError(f"train.device '{requested}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EdgepipeError(
            f"train.device '{requested}' asked for CUDA, but torch sees no CUDA GPU; use 'auto' or 'cpu'"
        )
    return device


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)


def make_optimizer(config: TrainConfig, parameters, lr: float | None = None) -> torch.optim.Optimizer:
    lr = lr or config.lr
    parameters = list(parameters)
    if parameters and isinstance(parameters[0], dict):  # param groups (backbone_lr): keep the trainable ones
        params: list = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in parameters]
        params = [g for g in params if g["params"]]
    else:
        params = [p for p in parameters if p.requires_grad]
    decay = config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=decay)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=decay)
    if config.optimizer == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, nesterov=True, weight_decay=decay)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=decay)


def make_scheduler(config: TrainConfig, optimizer, epochs: int, steps_per_epoch: int, lr: float):
    """Stepped once per batch."""
    total = max(1, epochs * steps_per_epoch)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1)
    if config.schedule == "onecycle":
        peaks = [group.get("lr", lr) for group in optimizer.param_groups]  # each group's own peak (backbone_lr)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def random_affine(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Small random rotations (+-10 deg), scalings (+-10 %) and shifts (+-2 px) of each image.

    The classic augmentation for small digit sets; done with affine_grid so it costs one batched op.
    """
    if batch.ndim == 3:  # (N, T, F) image rows read as a sequence (seqmnist): warp the image it came from
        return random_affine(batch[:, None], generator)[:, 0]
    if batch.ndim != 4:
        return batch  # flat vectors are not images
    n, _, h, w = batch.shape
    angle = (torch.rand(n, generator=generator) * 2 - 1) * (torch.pi / 18)
    scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * torch.tensor([4.0 / w, 4.0 / h])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = nn.functional.affine_grid(theta, list(batch.shape), align_corners=False)
    # Pad with the background value (the minimum after normalization), not with zero.
    background = batch.amin(dim=(1, 2, 3), keepdim=True)
    warped = nn.functional.grid_sample(batch - background, grid, align_corners=False, padding_mode="zeros")
    return warped + background


def input_batches(samples, batch_size: int):
    """Batches of an array, or of a split (streamed from files, or in memory)."""
    if isinstance(samples, np.ndarray):
        return (samples[start:start + batch_size] for start in range(0, len(samples), batch_size))
    return samples.batches(batch_size)


@torch.no_grad()
def predict(model: nn.Module, samples, device: torch.device, batch_size: int | None = None) -> np.ndarray:
    """The model's outputs on an array or a split, one batch in memory at a time."""
    model.eval()
    outputs = []
    shape = samples.shape[1:] if isinstance(samples, np.ndarray) else samples.sample_shape
    for batch in input_batches(samples, batch_size or eval_batch_size(shape)):
        chunk = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
        outputs.append(scored_outputs(model(chunk)))
    return np.concatenate(outputs)


def score(model: nn.Module, split: Split, device: torch.device, task: Task) -> float:
    """The task's primary metric of ``model`` on ``split`` (top-1 accuracy, PSNR...)."""
    return task.score(predict(model, split, device), task.targets(split))


def parameter_groups(model: nn.Module, backbone_lr: float | None) -> list | object:
    """One group, or the classifier at the main rate and the rest at ``backbone_lr`` (gentle fine-tuning)."""
    if backbone_lr is None:
        return model.parameters()
    from edgepipe.models import classifier_of

    head = classifier_of(model)
    if head is None:
        raise EdgepipeError("train.backbone_lr: the model has no 'classifier'/'fc'/'head' layer to tell apart")
    head_ids = {id(p) for p in head.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) not in head_ids], "lr": backbone_lr},
            {"params": [p for p in model.parameters() if id(p) in head_ids]}]


@dataclass
class FitResult:
    best_val_score: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    best_state: dict | None = None


@dataclass(frozen=True)
class FitOptions:
    """What a caller may change about one run of :func:`fit` beyond the recipe's ``train`` section."""

    epochs: int | None = None  # default: config.epochs
    lr: float | None = None  # default: config.lr
    device: torch.device | None = None  # default: config.device
    dist: Distributed | None = None  # default: one process
    on_epoch_end: Callable[[int, dict, nn.Module], None] | None = None  # (epoch, resumable state, model)
    after_step: Callable[[nn.Module], None] | None = None  # after every optimizer step (2:4 masks)
    start_epoch: int = 0  # resuming: the first epoch still to run
    optimizer_state: dict | None = None  # resuming: what on_epoch_end was given
    progress_label: str = "train"
    backbone_lr: float | None = None  # the classifier at lr, the rest at this (gentle fine-tuning)
    teacher: Teacher | None = None  # distil from this frozen model (edgepipe.distillation)


def fit(model: nn.Module, train_split: Split, val_split: Split, config: TrainConfig, task: Task,
        options: FitOptions | None = None) -> FitResult:
    """Train ``model`` in place on the task's loss; keep the weights with the best validation score (train/val only)."""
    from edgepipe.progress import progress_bar

    options = options or FitOptions()
    epochs = options.epochs or config.epochs
    lr = options.lr or config.lr
    device = options.device or pick_device(config.device)
    dist = options.dist or Distributed()
    start_epoch, optimizer_state, progress_label = options.start_epoch, options.optimizer_state, options.progress_label
    backbone_lr = options.backbone_lr
    model.to(device)
    trained: nn.Module = model
    if dist.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        trained = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    # an autoencoder's targets are its (augmented) inputs: never materialize them for the whole split
    y_train = None if task.targets_are_inputs else torch.from_numpy(task.targets(train_split))
    per_rank = len(train_split) // dist.world_size
    steps_per_epoch = max(1, -(-per_rank // config.batch_size))
    groups = parameter_groups(model, backbone_lr) if backbone_lr is not None else trained.parameters()
    optimizer = make_optimizer(config, groups, lr)
    scheduler = make_scheduler(config, optimizer, epochs, steps_per_epoch, lr)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state["optimizer"])
        scheduler.load_state_dict(optimizer_state["scheduler"])
    loss_fn = task.loss(config)
    mix = DistillMix(options.teacher, task, device) if options.teacher is not None else None
    if config.augment and task.moves_with_inputs:
        raise EdgepipeError(f"train.augment warps images but not their {task.name} targets; set train.augment: false")
    result = FitResult(best_val_score=-float("inf"), best_epoch=-1)
    if optimizer_state is not None:
        # a run interrupted before the task seam recorded its best under the accuracy names
        result.best_val_score = optimizer_state.get("best_val_score",
                                                    optimizer_state.get("best_val_accuracy", -float("inf")))
        result.best_epoch = optimizer_state.get("best_epoch", -1)
        result.best_state = optimizer_state.get("best_state")
        # the epochs before the interruption belong to the run's history too (an older checkpoint has none)
        result.history = [dict(record) for record in optimizer_state.get("history") or []]
    state = optimizer_state or {}
    peak = state.get("peak_val_score", state.get("peak_val_accuracy", result.best_val_score))
    # one sample's worth of the metric (a classifier's 1/n; nothing for a mean of continuous scores), and rounding
    tie = task.resolution(len(val_split)) / task.scores.per_unit + 1e-9

    with progress_bar(enabled=dist.is_main) as bar:
        progress = bar.add_task(progress_label, total=(epochs - start_epoch) * steps_per_epoch)
        for epoch in range(start_epoch, epochs):
            # Same permutation on every rank (seeded by epoch), each rank takes its own stride of it.
            generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
            order = torch.randperm(len(train_split), generator=generator)[dist.rank :: dist.world_size][:per_rank]
            chunks = [order[step * config.batch_size : (step + 1) * config.batch_size]
                      for step in range(steps_per_epoch)]
            trained.train()
            _keep_frozen_norms_in_eval(model)
            running, seen = 0.0, 0
            batches = train_split.train_batches(chunks, pin_memory=device.type == "cuda")
            for index, inputs in zip(chunks, batches, strict=True):
                targets = inputs if y_train is None else y_train[index]
                if config.augment:
                    inputs = random_affine(inputs, generator)
                    if task.targets_are_inputs:  # an autoencoder rebuilds the augmented image it was given
                        targets = inputs
                inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                outputs = trained(inputs)
                loss = loss_fn(outputs, targets)
                if mix is not None:  # alpha * distill + (1 - alpha) * task, the teacher on the same batch
                    loss = mix(outputs, inputs, loss)
                if not torch.isfinite(loss):
                    raise EdgepipeError(f"{progress_label}: loss became {loss.item()} at epoch {epoch + 1}; "
                                        "lower train.lr or set train.grad_clip")
                loss.backward()
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(trained.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                if options.after_step is not None:
                    options.after_step(model)
                running += loss.item() * len(targets)
                seen += len(targets)
                bar.update(progress, advance=1, description=f"{progress_label} epoch {epoch + 1}/{epochs}")
            val_score = score(model, val_split, device, task)
            record = {"epoch": epoch + 1, "train_loss": running / max(seen, 1), f"val_{task.metric}": val_score}
            if mix is not None:
                record.update(mix.epoch_losses())
            result.history.append(record)
            peak = max(peak, val_score)
            # Within one validation sample of the best so far is a tie (noise on a few hundred samples):
            # the later, more trained model wins it (a decaying schedule's last epochs are its converged ones).
            if val_score >= peak - tie:
                result.best_val_score, result.best_epoch = val_score, epoch + 1
                result.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if options.on_epoch_end is not None:
                options.on_epoch_end(epoch, {"optimizer": optimizer.state_dict(),
                                             "scheduler": scheduler.state_dict(),
                                             "best_val_score": result.best_val_score, "peak_val_score": peak,
                                             "best_epoch": result.best_epoch, "best_state": result.best_state,
                                             "history": result.history}, model)
    if result.best_state is not None:
        model.load_state_dict(result.best_state)
    return result


def _keep_frozen_norms_in_eval(model: nn.Module) -> None:
    """A BatchNorm whose scale and shift are frozen keeps its pretrained running statistics too: updating them
    from a small fine-tuning set would shift the very features the frozen layers were trained to produce."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine \
                and not any(p.requires_grad for p in module.parameters()):
            module.eval()


@contextlib.contextmanager
def frozen_backbone(model: nn.Module, classifier: nn.Module | None):
    """Freeze everything but the classifier (transfer learning); BN layers stay in eval statistics."""
    if classifier is None:
        raise EdgepipeError("freeze_backbone: the model has no 'classifier'/'fc'/'head' layer to keep trainable")
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    for parameter in model.parameters():
        parameter.requires_grad = False
    for parameter in classifier.parameters():
        parameter.requires_grad = True
    try:
        yield
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad = flags[name]
