"""`edgepipe build`'s settings: the device runtime's (edgepipe/device/settings.py declares every one once), plus
the target a workstation build is checked against, and the checks that need a target profile.

Everything here is plain data, so a request the target cannot satisfy is refused before TensorRT is
even imported ("refused before any work starts").
"""

from __future__ import annotations

from typing import Any

from edgepipe.device import settings as device
from edgepipe.device.settings import check_combinations as check_settings  # noqa: F401 - the stage's name for it
from edgepipe.device.settings import default_workspace_mib  # noqa: F401 - re-exported for the stages
from edgepipe.errors import EdgepipeError

DEFAULT_BATCH = device.OPTION["batch"].default


class BuildSettings(device.BuildSettings):
    """Every builder setting and the target; the engine manifest records all of them and the rebuild command
    replays them."""

    def __init__(self, precision: str, target: str | None = None, **values: Any) -> None:
        super().__init__(precision, **values)
        self.target = target

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "target": self.target}

    def cli_flags(self) -> list[str]:
        """The `edgepipe build` options that reproduce these settings (for the rebuild command)."""
        flags = self.command_line()  # --precision P first
        return flags[:2] + (["--target", self.target] if self.target else []) + flags[2:]


def check_against_target(settings: BuildSettings, target: Any) -> None:
    """What the target profile (edgepipe.targets.TargetProfile) cannot do, refused before any build."""
    from edgepipe.targets import require_dla, resolve_precision

    resolve_precision(target, settings.precision)  # raises when the target lacks the precision
    if settings.dla_core is not None:
        require_dla(target, settings.dla_core)
    if settings.workspace_mib > target.memory_mib:
        raise EdgepipeError(
            f"--workspace {settings.workspace_mib} MiB exceeds {target.name}'s "
            f"{target.memory_mib} MiB of memory; "
            f"use at most {target.memory_mib // 4} MiB (builds also need memory for weights and tactics)"
        )
    if settings.sparsity and not target.sparse_tensor_cores:
        raise EdgepipeError(f"{target.name} ({target.sm}) has no sparse tensor cores; drop --sparsity")
    if settings.hardware_compat != "none" and target.kind == "jetson":
        raise EdgepipeError(
            f"--hardware-compat is for desktop GPUs (Ampere and later), not {target.name}; drop it"
        )
