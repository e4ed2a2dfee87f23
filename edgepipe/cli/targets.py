"""`edgepipe targets`: the deployment target profiles and what each supports."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer


def command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the profiles (with sources) as JSON.")] = False,
) -> None:
    """List target profiles: compute capability, precisions, DLA, sparsity, memory, TensorRT, JetPack."""
    from rich.console import Console
    from rich.table import Table

    from edgepipe.targets import PRECISIONS, list_targets

    profiles = list_targets()
    if as_json:
        rows = []
        for profile in profiles:
            row = {field: getattr(profile, field) for field in profile.__dataclass_fields__}
            row["precisions"] = sorted(profile.precisions)
            row["releases"] = [asdict(release) for release in profile.releases]
            rows.append(row)
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="target profiles (--json adds the GPU and a source for each fact)")
    for column in ("name", "SM", "precisions", "DLA", "2:4 sparse", "memory", "TensorRT", "JetPack"):
        table.add_column(column, no_wrap=column in ("name", "SM", "TensorRT", "JetPack"))
    for profile in profiles:
        table.add_row(
            profile.name,
            profile.sm,
            "/".join(p for p in PRECISIONS if p in profile.precisions),
            str(profile.dla_cores),
            "yes" if profile.sparse_tensor_cores else "no",
            f"{profile.memory_mib // 1024} GiB",
            profile.tensorrt_text(),
            _span([release.jetpack for release in profile.releases]),
        )
    Console().print(table)


def _span(releases: list[str]) -> str:
    """Every JetPack a module runs, compactly: "4.6–4.6.1" (`--json` lists each with its TensorRT and CUDA)."""
    return "-" if not releases else releases[0] if len(releases) == 1 else f"{releases[0]}–{releases[-1]}"
