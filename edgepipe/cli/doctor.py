"""`edgepipe doctor`: what this machine can run, and which edgepipe backends will."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer


def _rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    platform_info, gpu = report["platform"], report["gpu"]
    if platform_info["jetson_model"]:
        release = f"L4T {platform_info['l4t']}, JetPack {platform_info['jetpack']}"
        where = f"{platform_info['jetson_model']} ({release})"
    else:
        where = f"{platform_info['system']} {platform_info['machine']}, Python {platform_info['python']}"
    gpu_text = "none found"
    if gpu["name"]:
        gpu_text = gpu["name"] + (f", {gpu['memory_mib']} MiB" if gpu["memory_mib"] else "")
        gpu_text += f", driver {gpu['driver']}" if gpu["driver"] else ""
    cpu = report["cpu"]
    onnxruntime = report["onnxruntime"]
    return [
        ("platform", where),
        ("target profile", report["target"] or "no matching profile (see edgepipe check --target)"),
        ("GPU", gpu_text + (f" ({gpu['error']})" if gpu.get("error") else "")),
        ("compute capability", gpu["compute_capability"] or "-"),
        ("CUDA", report["cuda"] or "not found"),
        ("TensorRT", report["tensorrt"]["version"]),
        ("CUDA runtime (ctypes)", f"libcudart, {report['cudart']['devices']} device(s)" if report["cudart"]["loadable"]
         else "libcudart not loadable"),
        ("onnxruntime", f"{onnxruntime['version']}; providers: {', '.join(onnxruntime['providers']) or '-'}"),
        ("onnx", report["onnx"]),
        ("torch", report["torch"]["version"] + (" (CUDA)" if report["torch"]["cuda"] else "")),
        ("CPU", f"{cpu['model']}, {cpu['cores']} cores; {' '.join(cpu['flags']) or 'no SIMD flags of note'}"),
        ("power mode", report["power_mode"] or "not readable (nvpmodel is Jetson-only)"),
    ]


def command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Show platform, GPU, CUDA, TensorRT, onnxruntime, torch and CPU, and which backends will run here."""
    from rich.console import Console
    from rich.table import Table

    from edgepipe.doctor import collect

    report = collect()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console = Console()
    table = Table(title="edgepipe doctor", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value", overflow="fold")
    for item, value in _rows(report):
        table.add_row(item, value)
    console.print(table)
    backends = Table(title="backends")
    backends.add_column("backend")
    backends.add_column("runs")
    backends.add_column("why not", overflow="fold")
    for backend in report["backends"]:
        backends.add_row(
            backend["backend"], "[green]yes[/]" if backend["runs"] else "[red]no[/]", backend["why"]
        )
    console.print(backends)
