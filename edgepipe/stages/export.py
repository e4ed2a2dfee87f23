"""`edgepipe export`: ONNX with a dynamic batch axis, checked by onnx.checker and against PyTorch on real samples."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import add_artifact, is_up_to_date, new_manifest, read_manifest, sha256_file, write_manifest
from edgepipe.errors import EdgepipeError
from edgepipe.progress import say
from edgepipe.recipe import DatasetConfig, ExportConfig
from edgepipe.rundir import atomic_dir, check_replaceable

PARITY_SAMPLES = 1000


def load_stage_dataset(manifest: dict[str, Any]):
    """Reload the exact splits a model was trained on (from the manifest), checking the fingerprint."""
    from edgepipe.data import load_dataset

    record = manifest["dataset"]
    dataset = load_dataset(DatasetConfig.model_validate(record["config"]))
    if dataset.fingerprint() != record["fingerprint"]:
        raise EdgepipeError(f"dataset '{dataset.name}' changed since the model was trained (fingerprint differs); "
                            "retrain or restore the data")
    return dataset


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max abs logit difference and top-1 agreement of two output batches."""
    return {
        "max_abs_diff": float(np.abs(reference - candidate).max()),
        "agreement": float((reference.argmax(1) == candidate.argmax(1)).mean()),
        "samples": int(len(reference)),
    }


def _torch_export(model, example, path: Path, config: ExportConfig) -> None:
    import torch

    dynamic_axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if config.dynamic_batch else None
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"], "dynamic_axes": dynamic_axes,
                              "opset_version": config.opset, "dynamo": config.exporter == "dynamo"}
    if config.exporter == "dynamo":
        kwargs["external_data"] = False  # one self-contained file: easier to copy to a device
    # The exporters print pages of progress and warnings; keep them for errors only.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(path), **kwargs)
        except Exception as exc:
            message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise EdgepipeError(f"ONNX export ({config.exporter}) failed: {message}; "
                                "try export.exporter: torchscript") from None


def export(source: Path, out: Path, config: ExportConfig | None = None, *, reuse: bool = False,
           name: str = "onnx-fp32") -> Path:
    """Export the model of a train/prune stage dir to ``out``/model.onnx and check parity on test samples."""
    import onnx
    import torch

    from edgepipe.checkpoint import load_model
    from edgepipe.runners.base import infer_in_batches
    from edgepipe.runners.onnxruntime import OrtRunner

    config = config or ExportConfig()
    source, out = Path(source), Path(out)
    check_replaceable(out, "export")
    source_manifest = read_manifest(source)
    model_entry = next((a for a in source_manifest["artifacts"] if a["format"] == "torch"), None)
    if model_entry is None:
        raise EdgepipeError(f"{source}: no PyTorch model in this stage to export")
    manifest = new_manifest("export", config.model_dump(mode="json"), {"model": model_entry["sha256"]})
    if reuse and is_up_to_date(out, manifest):
        say(f"[dim]export: up to date ({out})[/dim]")
        return out

    model, _ = load_model(source, model_entry["file"])
    dataset = load_stage_dataset(source_manifest)
    samples = dataset.test.x[:PARITY_SAMPLES]
    with torch.inference_mode():
        reference = model(torch.from_numpy(samples)).numpy()

    with atomic_dir(out, "export") as tmp:
        path = tmp / "model.onnx"
        example = torch.from_numpy(samples[:2])
        _torch_export(model, example, path, config)
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
        manifest["model"] = source_manifest["model"]
        manifest["dataset"] = source_manifest["dataset"]
        manifest["source"] = {"stage": source_manifest["stage"], "dir": str(source)}
        manifest["onnx"] = {"opset": config.opset, "exporter": config.exporter, "input": "input",
                            "output": "logits", "dynamic_batch": config.dynamic_batch,
                            "sha256": sha256_file(path)}
        manifest["metrics"] = {"parity": check}
        add_artifact(manifest, tmp, "model.onnx", name=name, fmt="onnx", precision="fp32")
        write_manifest(tmp, manifest)
    say(f"export: {out / 'model.onnx'}  parity: agreement {check['agreement']:.2%}, "
        f"max |diff| {check['max_abs_diff']:.1e}")
    return out
