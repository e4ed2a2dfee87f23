"""`edgepipe export`: ONNX with a dynamic batch axis, checked by onnx.checker and against PyTorch on real samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.artifacts import add_artifact, new_manifest, read_manifest, sha256_file
from edgepipe.data import load_stage_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.onnx_export import export_onnx, parity, scored_outputs
from edgepipe.progress import say
from edgepipe.recipe import ExportConfig
from edgepipe.run import EXPORT, EXPORT_NAMES, FP32_ONNX
from edgepipe.stages.frame import StageFrame
from edgepipe.tasks import task_of
from edgepipe.tasks.base import constant_outputs

PARITY_SAMPLES = 1000


def check_not_degenerate(outputs: np.ndarray, targets: np.ndarray, labels: list[str], task) -> str | None:
    """Refuse a model whose outputs do not depend on its input (a dead network: parity would be perfect and
    every prediction the same); return the task's warning, also recorded in the manifest, when it scores no
    better than a trivial guess (chance for a classifier, the mean image for an autoencoder)."""
    dead = constant_outputs(outputs)
    if dead:
        raise EdgepipeError(f"{dead}; nothing was exported")
    warning = task.degenerate(outputs, targets, labels)
    if warning:
        say(f"[yellow]export: {warning}[/yellow]")
    return warning


def export(source: Path, out: Path, config: ExportConfig | None = None, *, reuse: bool = False,
           name: str = EXPORT_NAMES[EXPORT]) -> Path:
    """Export the model of a train/prune stage dir to ``out``/model.onnx and check parity on test samples."""
    import onnx
    import torch

    from edgepipe.checkpoint import load_model
    from edgepipe.runners.base import infer_in_batches
    from edgepipe.runners.onnxruntime import OrtRunner

    config = config or ExportConfig()
    source, out = Path(source), Path(out)
    frame = StageFrame(EXPORT, out)
    source_manifest = read_manifest(source)
    model_entry = source_manifest.find_artifact(fmt="torch")
    if model_entry is None:
        raise EdgepipeError(f"{source}: no PyTorch model in this stage to export")
    manifest = new_manifest(EXPORT, config.model_dump(mode="json"), {"model": model_entry.sha256})
    if frame.up_to_date(manifest, reuse=reuse):
        return out

    model, _ = load_model(source, model_entry.file)
    dataset = load_stage_dataset(source_manifest)
    task = task_of(source_manifest)
    samples = dataset.test.take(PARITY_SAMPLES)
    with torch.inference_mode():
        reference = scored_outputs(model(torch.from_numpy(samples)))
    degenerate = check_not_degenerate(reference, task.targets(dataset.test)[:PARITY_SAMPLES], dataset.labels, task)

    with frame.writing(manifest) as tmp:
        path = tmp / FP32_ONNX
        example = torch.from_numpy(samples[:2])
        names = export_onnx(model, example, path, config)
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise EdgepipeError(f"exported ONNX fails onnx.checker: {str(exc).splitlines()[0]}") from None
        with OrtRunner(path) as runner:
            if config.dynamic_batch and runner.input_spec.shape[0] is not None:
                raise EdgepipeError("export asked for a dynamic batch axis but the ONNX input has a fixed batch")
            candidate = infer_in_batches(runner, samples, batch_size=128)
        check = parity(reference, candidate, task)
        allowed = config.parity_atol + config.parity_rtol * check["reference_max_abs"]
        check["allowed_abs_diff"] = allowed
        floor = task.export_agreement_floor(config)
        if (floor is not None and check["agreement"] < floor) or check["max_abs_diff"] > allowed:
            raise EdgepipeError(
                f"ONNX parity broken: {task.agreement_label} {task.format_agreement(check['agreement'])}"
                + (f" (need {task.format_agreement(floor)})" if floor is not None else "") + ", "
                f"max |diff| {check['max_abs_diff']:.2e} (allowed {allowed:.1e} = {config.parity_atol:.0e} + "
                f"{config.parity_rtol:.0e} x max |output|) on {check['samples']} test samples; nothing was written"
            )
        manifest.carry_from(source_manifest, source)
        manifest.onnx = {"opset": config.opset, "exporter": config.exporter, "input": "input",
                            "output": names[0] if len(names) == 1 else names, "dynamic_batch": config.dynamic_batch,
                            "sha256": sha256_file(path)}
        manifest.metrics = {"parity": check, **({"degenerate": degenerate} if degenerate else {})}
        add_artifact(manifest, tmp, FP32_ONNX, name=name, fmt="onnx", precision="fp32")
    say(f"export: {out / FP32_ONNX}  parity: {task.agreement_label} {task.format_agreement(check['agreement'])}, "
        f"max |diff| {check['max_abs_diff']:.1e}")
    return out
