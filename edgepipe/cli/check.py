"""`edgepipe check MODEL.onnx --target PROFILE`: offline TensorRT preflight, no GPU needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def command(
    model: Annotated[Path, typer.Argument(help="The ONNX model to check.", show_default=False)],
    target: Annotated[str, typer.Option("--target", "-t", help="Target profile, e.g. jetson-orin-nano.")],
    dla: Annotated[bool, typer.Option("--dla", help="Check DLA eligibility (Jetson DLA cores).")] = False,
    precision: Annotated[
        str | None,
        typer.Option(help="Precision the build will use: fp32, fp16, int8 or best (default: not decided)."),
    ] = None,
    tensorrt: Annotated[
        str | None, typer.Option(help="TensorRT release to check against (default: the target's oldest).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check an ONNX model against a target's TensorRT before going to the device.

    Checks operators (TensorRT ONNX parser matrix), QDQ form, dynamic axes, FP16 range, --dla eligibility.

    Exit 0 when ready, 1 when something will fail on the device.
    """
    from rich.console import Console
    from rich.table import Table

    from edgepipe.check import check_onnx, has_errors
    from edgepipe.targets import get_target, resolve_precision

    profile = get_target(target)
    resolved = resolve_precision(profile, precision)[0] if precision else None
    findings = check_onnx(model, profile, dla=dla, precision=resolved, tensorrt=tensorrt)
    tensorrt_version = tensorrt or profile.checked_tensorrt
    failed = has_errors(findings)

    if as_json:
        report = {
            "model": str(model),
            "target": profile.name,
            "tensorrt": tensorrt_version,
            "precision": resolved,
            "dla": dla,
            "ready": not failed,
            "findings": [finding.to_dict() for finding in findings],
        }
        typer.echo(json.dumps(report, indent=2))
        raise typer.Exit(1 if failed else 0)

    console = Console()
    if findings:
        table = Table(title=f"{model.name} on {profile.name} (TensorRT {tensorrt_version})")
        table.add_column("severity")
        table.add_column("rule")
        table.add_column("finding", overflow="fold")
        for finding in findings:
            style = SEVERITY_STYLE[finding.severity]
            table.add_row(f"[{style}]{finding.severity}[/]", finding.rule, finding.message)
        console.print(table)
    if failed:
        errors = sum(finding.severity == "error" for finding in findings)
        console.print(f"[bold red]not ready for {profile.name}[/]: {errors} error(s) will fail on the device")
        raise typer.Exit(1)
    console.print(f"[green]ready for {profile.name}[/] (TensorRT {tensorrt_version})")
