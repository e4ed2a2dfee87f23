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
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from edgepipe.targets import HARDWARE_PRECISIONS, list_targets

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
    # Fits an 80-column terminal: light borders, fp32 implied, ranges (--json has every release).
    table = Table(title="target profiles (--json: the GPU, each JetPack release, a source per fact)",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0))
    for column in ("name", "SM", "fp32 +", "DLA", "2:4", "GiB", "TensorRT", "JetPack"):
        table.add_column(column, no_wrap=True)
    for profile in profiles:
        low, high = profile.tensorrt_min, profile.tensorrt_max
        jetpacks = [release.jetpack for release in profile.releases]
        table.add_row(
            profile.name,
            profile.sm,
            ",".join(p for p in HARDWARE_PRECISIONS if p != "fp32" and p in profile.precisions),
            str(profile.dla_cores),
            "yes" if profile.sparse_tensor_cores else "no",
            str(profile.memory_mib // 1024),
            low if low == high else f"{low}–{high}",
            "-" if not jetpacks else jetpacks[0] if len(jetpacks) == 1 else f"{jetpacks[0]}–{jetpacks[-1]}",
        )
    Console().print(table)

