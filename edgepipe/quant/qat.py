"""Quantization-aware training: fine-tune with fake INT8 quantization, then export QDQ graphs for both tracks.

A minimal fake-quant, not torch.ao's prepare/convert machinery: on every Conv/Linear, weights are fake
quantized per output channel (symmetric int8, scale max|w|/127: exactly what onnxruntime's per-channel
weight quantizer will compute from the fine-tuned weights) through a parametrization, and inputs per
tensor (symmetric int8 from a running max) through a forward pre-hook. Both use torch's
fake_quantize_* ops, whose gradient is the straight-through estimator. The loop is edgepipe.training.fit.
After fine-tuning the fake quantizers are removed and the float model is exported and quantized from
the same calibration set as the PTQ graphs, so the QAT graphs differ from PTQ only by their weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepipe.artifacts import Artifact
from edgepipe.errors import EdgepipeError

ACTIVATION_MOMENTUM = 0.1


def _fake_quant_modules(model) -> list:
    import torch

    return [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear))]


def attach_fake_quant(model) -> list:
    """Fake-quantize weights (per channel) and inputs (per tensor) of every Conv/Linear; returns hook handles."""
    import torch
    from torch.nn.utils import parametrize

    class PerChannelWeight(torch.nn.Module):
        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            amax = weight.detach().abs().flatten(1).amax(1).clamp(min=1e-8)
            scale = (amax / 127.0).float()
            zero = torch.zeros_like(scale, dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)

    def quantize_input(module, args):
        (x, *rest) = args
        amax = x.detach().abs().amax().clamp(min=1e-8)
        if module.training:  # running max while training, frozen for evaluation
            module.qat_amax = amax if module.qat_amax is None else (
                (1 - ACTIVATION_MOMENTUM) * module.qat_amax + ACTIVATION_MOMENTUM * amax)
        scale = float((module.qat_amax if module.qat_amax is not None else amax) / 127.0)
        return (torch.fake_quantize_per_tensor_affine(x, scale, 0, -127, 127), *rest)

    handles = []
    for module in _fake_quant_modules(model):
        parametrize.register_parametrization(module, "weight", PerChannelWeight())
        module.qat_amax = None
        handles.append(module.register_forward_pre_hook(quantize_input))
    return handles


def detach_fake_quant(model, handles: list) -> None:
    from torch.nn.utils import parametrize

    for handle in handles:
        handle.remove()
    for module in _fake_quant_modules(model):
        if parametrize.is_parametrized(module, "weight"):
            # Keep the trained float weights: onnxruntime quantizes them with the same per-channel rule.
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        if hasattr(module, "qat_amax"):
            del module.qat_amax


def torch_source(src) -> tuple[Path, Artifact]:
    """The train/prune stage of the same run that the ONNX was exported from (its model's sha256 matches).

    Looked up by stage name inside the run, never by the absolute path the manifest recorded: a manifest
    from someone else must not make us read a model from anywhere else on this machine.
    """
    from edgepipe.artifacts import is_stage_dir, read_manifest
    from edgepipe.run import IMPORT, ONNX_ORIGIN_NEEDS_TORCH, PRUNE, TRAIN

    if src.manifest is not None and src.manifest.stage == IMPORT:  # the ONNX file trained elsewhere is the original
        raise EdgepipeError(ONNX_ORIGIN_NEEDS_TORCH.format(where=src.onnx))
    recorded = (src.manifest.source if src.manifest is not None else None) or {}
    expected = src.manifest.parents.get("model") if src.manifest is not None else None
    name = Path(str(recorded.get("dir") or "")).name
    candidate = src.stage_dir.parent / name if src.stage_dir is not None and name else None
    if candidate is not None and any(is_stage_dir(candidate, stage) for stage in (TRAIN, IMPORT, PRUNE)):
        entry = read_manifest(candidate).find_artifact(fmt="torch")
        if entry is not None and entry.sha256 == expected:
            return candidate, entry
    raise EdgepipeError(f"--qat needs the PyTorch model the ONNX came from; {src.onnx}'s run holds no train/ or "
                        "prune/ stage with that model (run quantize on the run directory)")


def quantization_aware_training(src, tmp: Path, config, calibration_set, reference: dict, context) -> dict[str, Any]:
    """Fine-tune the run's model with fake quantization; write model.int8.{cpu,trt}.qat.onnx into ``tmp`` (its
    intermediate graphs go to a scratch folder beside it); ``reference``: the FP32 graph's val and test scores."""
    from edgepipe.rundir import scratch_dir

    with scratch_dir(tmp) as scratch:
        return _qat(src, (tmp, scratch), config, calibration_set, reference, context)


def _qat(src, folders: tuple[Path, Path], config, calibration_set, reference: dict, context) -> dict[str, Any]:
    import torch

    from edgepipe.checkpoint import load_model
    from edgepipe.distillation import distill_record, teacher_for
    from edgepipe.onnx_export import export_onnx
    from edgepipe.quant.calibration import ArrayDataReader
    from edgepipe.quant.scoring import score_of
    from edgepipe.quant.tracks import calibrate, preprocess, quantize_track, tracks_for
    from edgepipe.recipe import ExportConfig
    from edgepipe.run import QAT_ONNX
    from edgepipe.training import FitOptions, fit, seed_everything

    tmp, scratch = folders
    source_dir, model_entry = torch_source(src)
    model, _ = load_model(source_dir, model_entry.file)
    task, train_config = context.task, context.train  # the run's, read once by the command
    dataset = src.dataset()
    seed_everything(train_config.seed)
    lr = config.qat_lr or train_config.lr / 10
    # the float model, frozen before fake quantization, is the teacher (config.qat_distill; edgepipe.distillation)
    teacher = teacher_for(model, "qat", config.qat_distill, config.qat_distill_alpha, config.qat_distill_temperature,
                          task)
    handles = attach_fake_quant(model)
    result = fit(model, dataset.train, dataset.val, train_config.model_copy(update={"augment": False}), task,
                 FitOptions(epochs=config.qat_epochs, lr=lr, device=torch.device("cpu"), progress_label="qat",
                            teacher=teacher))
    detach_fake_quant(model, handles)
    model.eval()

    export_config = ExportConfig.model_validate({**src.manifest.config, "dynamic_batch": True})
    fp32 = scratch / "qat.fp32.onnx"
    export_onnx(model, torch.from_numpy(dataset.test.take(2)), fp32, export_config)
    prepared = preprocess(fp32, scratch / "qat.prepared.onnx")
    ranges_path = scratch / "qat.ranges.json"
    input_name = _graph(prepared).input[0].name  # edgepipe's own export: one input
    calibrate(prepared, ArrayDataReader(calibration_set.data, input_name), config.method, config.percentile,
              ranges_path)
    files = dict(QAT_ONNX)
    drops = {}
    keep = [name for name in config.keep_float if name in {node.name for node in _graph(prepared).node}]
    tracks = tracks_for(config)
    for key, filename in files.items():
        track = next(t for t in tracks.values() if t.name == key)
        quantize_track(prepared, tmp / filename, track, config.method, ranges_path, keep)  # the user's float nodes
        drops[key] = round(task.drop(reference["val"], score_of(tmp / filename, dataset.val, task)), 4)
    return {"files": files, "epochs": config.qat_epochs, "lr": lr, "best_val_score": result.best_val_score,
            "distill": distill_record(teacher, task), "val_drop": drops, "calibration_sha256": calibration_set.sha256}


def _graph(path):
    import onnx

    return onnx.load(str(path), load_external_data=False).graph
