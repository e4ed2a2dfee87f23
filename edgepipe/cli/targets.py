"""`edgepipe targets`: the deployment target profiles and what each supports."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the profiles (with sources) as JSON.")] = False,
) -> None:
    """List target profiles: compute capability, precisions, DLA, sparsity, memory, TensorRT, JetPack."""
    from rich.console import Console
    from rich.table import Table

    from edgepipe.targets import list_targets

    profiles = list_targets()
    if as_json:
        rows = []
        for profile in profiles:
            row = {field: getattr(profile, field) for field in profile.__dataclass_fields__}
            row["precisions"] = sorted(profile.precisions)
            rows.append(row)
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="target profiles (--json adds the GPU and a source for each fact)")
    for column in ("name", "SM", "precisions", "DLA", "2:4 sparse", "memory", "TensorRT", "JetPack"):
        table.add_column(column, no_wrap=column in ("name", "SM"))
    for profile in profiles:
        trt = (
            profile.tensorrt_min
            if profile.tensorrt_min == profile.tensorrt_max
            else (f"{profile.tensorrt_min}–{profile.tensorrt_max}")
        )
        table.add_row(
            profile.name,
            profile.sm,
            "/".join(p for p in ("int8", "fp16", "fp32") if p in profile.precisions),
            str(profile.dla_cores),
            "yes" if profile.sparse_tensor_cores else "no",
            f"{profile.memory_mib // 1024} GiB",
            trt,
            profile.jetpack or "-",
        )
    Console().print(table)
