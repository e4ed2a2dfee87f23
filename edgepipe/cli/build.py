"""`edgepipe build`: a TensorRT engine from a run directory or an ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgepipe import defaults


def command(
    source: Annotated[Path, typer.Argument(help="Run directory (export/ + quantize/) or an .onnx file.")],
    precision: Annotated[str, typer.Option(help="fp32, fp16, int8, or best (the fastest the target/GPU supports).")
                         ] = defaults.BUILD["precision"],
    target: Annotated[str | None, typer.Option(help="Device profile (jetson-orin-nano, desktop-ampere, ...); "
                                                    "refuses what it can't do.")] = None,
    workspace: Annotated[int | None, typer.Option(help="Builder workspace limit in MiB (default: 1024, at most 1/4 "
                                                       "of device memory).")] = defaults.BUILD["workspace_mib"],
    dla_core: Annotated[int | None, typer.Option(min=0, help="Run on this DLA core (Jetson Xavier/Orin).")]
    = defaults.BUILD["dla_core"],
    gpu_fallback: Annotated[bool, typer.Option(help="Let layers DLA cannot run fall back to the GPU.")]
    = defaults.BUILD["gpu_fallback"],
    sparsity: Annotated[bool, typer.Option(help="Use 2:4 sparse tensor cores (needs a run pruned with method 2:4).")
                        ] = defaults.BUILD["sparsity"],
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file: reused when present, saved after "
                                                           "the build.")] = None,
    batch: Annotated[str, typer.Option(help="Optimization profile batch sizes MIN:OPT:MAX (or one static N).")]
    = ":".join(map(str, defaults.BUILD["batch"])),
    opt_level: Annotated[int | None, typer.Option(help="Builder optimization level 0-5 (TensorRT >= 8.6; its "
                                                       "default is 3).")] = defaults.BUILD["opt_level"],
    version_compatible: Annotated[bool, typer.Option(help="Build an engine later TensorRT versions of the same "
                                                          "major can load.")]
    = defaults.BUILD["version_compatible"],
    hardware_compat: Annotated[str, typer.Option(help="Hardware compatibility: none, ampere_plus or same_cc.")]
    = defaults.BUILD["hardware_compat"],
    out: Annotated[Path | None, typer.Option(help="Output directory (default: SOURCE/build-<precision>).")] = None,
    rebuild: Annotated[bool, typer.Option(help="Rebuild even when a matching engine exists.")] = False,
) -> None:
    """Build a TensorRT engine (model.<precision>.engine + manifest) for this machine's TensorRT and GPU."""
    from edgepipe.artifacts import read_manifest
    from edgepipe.cli.options import stage_config
    from edgepipe.recipe import BuildConfig
    from edgepipe.stages.build import build
    from edgepipe.trt.settings import parse_batch

    config = stage_config(BuildConfig, {
        "precision": precision, "workspace_mib": workspace, "batch": parse_batch(batch), "dla_core": dla_core,
        "gpu_fallback": gpu_fallback, "sparsity": sparsity, "opt_level": opt_level,
        "version_compatible": version_compatible, "hardware_compat": hardware_compat},
        flags={"workspace_mib": "--workspace"})
    stage = build(source, out, config, target=target, timing_cache=timing_cache, rebuild=rebuild)
    manifest = read_manifest(stage)
    config = manifest.config
    machine = config["machine"]
    typer.echo(config["precision_reason"])
    typer.echo(config["plan"])
    for artifact in manifest.artifacts:
        typer.echo(
            f"wrote {stage / artifact.file} ({artifact.size_bytes / 2**20:.1f} MiB) for TensorRT "
            f"{machine['tensorrt_version']} on {machine['gpu_name']}"
        )
