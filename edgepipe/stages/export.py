"""`edgepipe export`: ONNX with a dynamic batch axis, checked by onnx.checker and against PyTorch on real samples."""

from __future__ import annotations

from pathlib import Path

from edgepipe.artifacts import add_artifact, is_up_to_date, new_manifest, read_manifest, sha256_file, write_manifest
from edgepipe.data import load_stage_dataset
from edgepipe.errors import EdgepipeError
from edgepipe.onnx_export import OUTPUT_NAME, export_onnx, parity
from edgepipe.progress import say
from edgepipe.recipe import ExportConfig
from edgepipe.run import EXPORT, EXPORT_NAMES, FP32_ONNX
from edgepipe.rundir import atomic_dir, check_replaceable

PARITY_SAMPLES = 1000


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
        if check["agreement"] < config.min_agreement or check["max_abs_diff"] > config.parity_atol:
            raise EdgepipeError(
                f"ONNX parity broken: top-1 agreement {check['agreement']:.4%} (need {config.min_agreement:.2%}), "
                f"max |diff| {check['max_abs_diff']:.2e} (allowed {config.parity_atol:.0e}) on {check['samples']} "
                "test samples; nothing was written"
            )
        manifest.carry_from(source_manifest, source)
        manifest.onnx = {"opset": config.opset, "exporter": config.exporter, "input": "input",
                            "output": OUTPUT_NAME, "dynamic_batch": config.dynamic_batch,
                            "sha256": sha256_file(path)}
        manifest.metrics = {"parity": check}
        add_artifact(manifest, tmp, FP32_ONNX, name=name, fmt="onnx", precision="fp32")
        write_manifest(tmp, manifest)
    say(f"export: {out / FP32_ONNX}  parity: agreement {check['agreement']:.2%}, "
        f"max |diff| {check['max_abs_diff']:.1e}")
    return out
