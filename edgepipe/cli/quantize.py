from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgepipe import defaults
from edgepipe.cli.shared_options import DistillAlpha, DistillMode, DistillTemperature


def command(
    source: Annotated[Path, typer.Argument(help="Run directory (export-pruned/ preferred, else export/), export "
                                                "directory, or its model.onnx.")],
    method: Annotated[str, typer.Option(help="Calibration method: minmax, entropy or percentile.")]
    = defaults.QUANTIZE["method"],
    percentile: Annotated[float, typer.Option(help="With --method percentile: the percentile of |x| kept.")]
    = defaults.QUANTIZE["percentile"],
    calib: Annotated[str, typer.Option("--calib", help="Calibration set: calibration/NAME.yaml or a folder of "
                                                         "images at any size (brought to the model's input as "
                                                         "training evaluated: resize, centre crop, normalize).")]
    = defaults.QUANTIZE["calibration"],
    qat: Annotated[bool, typer.Option(help="Also fine-tune with fake quantization (QAT) and export QDQ graphs.")]
    = defaults.QUANTIZE["qat"],
    qat_distill: DistillMode = defaults.QUANTIZE["qat_distill"],
    qat_distill_alpha: DistillAlpha = defaults.QUANTIZE["qat_distill_alpha"],
    qat_distill_temperature: DistillTemperature = defaults.QUANTIZE["qat_distill_temperature"],
    max_drop: Annotated[float | None, typer.Option(help="The run's budget against the original, on val, in the task's "
                                                        "unit: top-1 points, PSNR dB (default: the recipe's "
                                                        "eval.max_drop); what prune lost is spent first.")]
    = defaults.QUANTIZE["max_drop"],
    reduce_range: Annotated[bool, typer.Option(help="7-bit weights on the CPU track (for CPUs without VNNI).")]
    = defaults.QUANTIZE["reduce_range"],
    tensorrt_version: Annotated[str, typer.Option(help="TensorRT that will read trt.calib.cache.")]
    = defaults.QUANTIZE["tensorrt_version"],
    cpu_speed_fallback: Annotated[bool, typer.Option(help="CPU track: keep a layer in float where int8 is measured "
                                                          "slower at --speed-batch.")]
    = defaults.QUANTIZE["cpu_speed_fallback"],
    speed_batch: Annotated[int, typer.Option(min=1, help="Batch size the CPU track's speed is measured at.")]
    = defaults.QUANTIZE["speed_batch"],
    retime: Annotated[bool, typer.Option(help="Measure the CPU track's speed decision again instead of reusing "
                                              "the one this machine made for the same model.")]
    = defaults.QUANTIZE["retime"],
    speed_runtime: Annotated[str, typer.Option(help="CPU runtime the speed fallback measures on: auto (the installed "
                                                    "one fastest on the all-int8 graph), onnxruntime or openvino.")]
    = defaults.QUANTIZE["speed_runtime"],
    keep_float: Annotated[list[str] | None, typer.Option(help="ONNX node name kept in float in both INT8 tracks "
                                                              "(as Netron shows it); repeatable.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory (default: RUN/quantize).")]
    = None,
) -> None:
    """INT8 for TensorRT (QDQ) and the CPU (QDQ u8s8), a TensorRT calibration cache and FP16, from one calibration."""
    from edgepipe.cli.options import stage_config
    from edgepipe.progress import console
    from edgepipe.recipe import QuantizeConfig
    from edgepipe.report import naive_table, quantize_table
    from edgepipe.run import EXPORT, IMPORT, QUANTIZE
    from edgepipe.stages.quantize import quantize, resolve_source

    config = stage_config(QuantizeConfig, {
        "method": method, "percentile": percentile, "calibration": calib, "qat": qat, "qat_distill": qat_distill,
        "qat_distill_alpha": qat_distill_alpha, "qat_distill_temperature": qat_distill_temperature,
        "max_drop": max_drop,
        "reduce_range": reduce_range, "tensorrt_version": tensorrt_version, "cpu_speed_fallback": cpu_speed_fallback,
        "speed_batch": speed_batch, "retime": retime, "speed_runtime": speed_runtime, "keep_float": keep_float or []},
        flags={"calibration": "--calib"})
    resolved = resolve_source(source)
    if out is None:
        stage_dir = (resolved.stage_dir or resolved.onnx.parent).absolute()
        in_run = stage_dir.name.startswith(EXPORT) or stage_dir.name == IMPORT
        out = (stage_dir.parent if in_run else stage_dir) / QUANTIZE
    result = quantize(source, out, config)

    from edgepipe.artifacts import read_manifest
    from edgepipe.report.results import QuantizeResult

    metrics = QuantizeResult.model_validate(read_manifest(result).metrics)
    console.print(quantize_table(metrics, result))
    if metrics.naive:
        console.print(naive_table(metrics))
    cpu = metrics.cpu
    vnni = "unknown" if not cpu.get("known") else ("yes" if cpu["vnni"] else "no (consider --reduce-range)")
    fallback = metrics.fallback
    speed = next(iter(metrics.speed.values()), None)
    where = (f"batch-{speed['batch']} speed on {speed.get('runtime', 'onnxruntime')}, {speed['threads']} threads; "
             if speed else "")
    console.print(f"CPU VNNI: {vnni}; {where}decisions on val, table shows test")
    by_user = fallback.get("kept_float_by_user") or []
    if by_user:
        console.print(f"kept in float as asked (--keep-float): {', '.join(by_user)}")
    for_budget = [name for name in fallback.get("excluded", []) if name not in by_user]
    if fallback.get("needed"):
        console.print(f"kept in float to meet the {fallback['max_drop']} {fallback.get('unit', 'pts')} left of the "
                      f"budget: {', '.join(for_budget) or 'nothing more'}")
    speed_fallback = metrics.cpu_speed_fallback or {}
    if speed_fallback.get("reverted"):
        console.print(f"CPU track: {speed_fallback['reverted']}")
    for row in speed_fallback.get("table", []) if speed_fallback.get("kept_float") else []:
        if row["kept_float"]:
            console.print(f"CPU track keeps {row['node']} ({row['op']}) in float: {row['float_ms']:.3f} ms vs "
                          f"{row['int8_ms']:.3f} ms in int8 at batch {speed_fallback['batch']}")
    if metrics.qat:
        unit = metrics.task.get("unit", "pts")
        console.print(f"QAT recovered {metrics.qat['recovered']:+.2f} {unit} of PTQ's val drop "
                      f"({'yes' if metrics.qat['qat_helped'] else 'no'})")
