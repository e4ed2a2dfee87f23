"""`edgepipe export`: ONNX with a dynamic batch axis, checked by onnx.checker and against PyTorch on real samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.artifacts import add_artifact, is_up_to_date, new_manifest, read_manifest, sha256_file, write_manifest
from edgepipe.data import load_stage_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.onnx_export import OUTPUT_NAME, export_onnx, parity
from edgepipe.progress import say
from edgepipe.recipe import ExportConfig
from edgepipe.run import EXPORT, EXPORT_NAMES, FP32_ONNX
from edgepipe.rundir import atomic_dir, check_replaceable

PARITY_SAMPLES = 1000


def check_not_degenerate(outputs: np.ndarray, labels: np.ndarray, classes: int) -> str | None:
    """Refuse a model whose outputs do not depend on its input (a dead network: parity would be perfect and
    every prediction the same); return a warning, also recorded in the manifest, when it scores at chance."""
    spread = float(np.abs(outputs - outputs[:1]).max()) if len(outputs) > 1 else 1.0
    if spread == 0.0:
        raise EdgepipeError(f"the model's outputs are the same for all {len(outputs)} test samples (every value "
                            f"{float(outputs.ravel()[0]):.3g}): it does not depend on its input, so training failed "
                            "(dead activations, a diverged learning rate); nothing was exported")
    if classes < 2 or len(labels) != len(outputs) or outputs.ndim != 2 or outputs.shape[1] != classes:
        return None
    accuracy = float((outputs.argmax(1) == labels).mean())
    chance = 1.0 / classes
    # within two standard errors of guessing on this many samples: indistinguishable from chance
    if accuracy <= chance + 2 * (chance * (1 - chance) / len(labels)) ** 0.5:
        warning = (f"test accuracy {accuracy:.1%} is at chance for {classes} classes ({chance:.1%} on "
                   f"{len(labels)} samples): the model learned nothing useful; check the data, the learning rate "
                   "or start from pretrained weights")
        say(f"[yellow]export: {warning}[/yellow]")
        return warning
    return None


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
    check_replaceable(out, EXPORT)
    source_manifest = read_manifest(source)
    model_entry = source_manifest.find_artifact(fmt="torch")
    if model_entry is None:
        raise EdgepipeError(f"{source}: no PyTorch model in this stage to export")
    manifest = new_manifest(EXPORT, config.model_dump(mode="json"), {"model": model_entry.sha256})
    if reuse and is_up_to_date(out, manifest):
        say(f"[dim]export: up to date ({out})[/dim]")
        return out

    model, _ = load_model(source, model_entry.file)
    dataset = load_stage_dataset(source_manifest)
    samples = dataset.test.x[:PARITY_SAMPLES]
    with torch.inference_mode():
        reference = model(torch.from_numpy(samples)).numpy()
    degenerate = check_not_degenerate(reference, dataset.test.y[:PARITY_SAMPLES], len(dataset.labels))

    with atomic_dir(out, EXPORT) as tmp:
        path = tmp / FP32_ONNX
        example = torch.from_numpy(samples[:2])
        export_onnx(model, example, path, config)
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise EdgepipeError(f"exported ONNX fails onnx.checker: {str(exc).splitlines()[0]}") from None
        with OrtRunner(path) as runner:
            if config.dynamic_batch and runner.input_spec.shape[0] is not None:
                raise EdgepipeError("export asked for a dynamic batch axis but the ONNX input has a fixed batch")
            candidate = infer_in_batches(runner, samples, batch_size=128)
        check = parity(reference, candidate)
        allowed = config.parity_atol + config.parity_rtol * float(np.abs(reference).max())
        check["allowed_abs_diff"] = allowed
        if check["agreement"] < config.min_agreement or check["max_abs_diff"] > allowed:
            raise EdgepipeError(
                f"ONNX parity broken: top-1 agreement {check['agreement']:.4%} (need {config.min_agreement:.2%}), "
                f"max |diff| {check['max_abs_diff']:.2e} (allowed {allowed:.1e} = {config.parity_atol:.0e} + "
                f"{config.parity_rtol:.0e} x max |output|) on {check['samples']} test samples; nothing was written"
            )
        manifest.carry_from(source_manifest, source)
        manifest.onnx = {"opset": config.opset, "exporter": config.exporter, "input": "input",
                            "output": OUTPUT_NAME, "dynamic_batch": config.dynamic_batch,
                            "sha256": sha256_file(path)}
        manifest.metrics = {"parity": check, **({"degenerate": degenerate} if degenerate else {})}
        add_artifact(manifest, tmp, FP32_ONNX, name=name, fmt="onnx", precision="fp32")
        write_manifest(tmp, manifest)
    say(f"export: {out / FP32_ONNX}  parity: agreement {check['agreement']:.2%}, "
        f"max |diff| {check['max_abs_diff']:.1e}")
    return out
