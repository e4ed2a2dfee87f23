"""Builder settings for `edgepipe build` and the checks that need no GPU (target limits, flag combinations).

Everything here is plain data, so a request the target cannot satisfy is refused before TensorRT is
even imported ("refused before any work starts").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgepipe.errors import EdgepipeError
from edgepipe.recipe import BuildConfig
from edgepipe.targets import PRECISIONS  # one list of precisions: the target profiles own it

# names of trt.HardwareCompatibilityLevel members, as the CLI spells them
HARDWARE_COMPAT_LEVELS = {"none": "NONE", "ampere_plus": "AMPERE_PLUS", "same_cc": "SAME_COMPUTE_CAPABILITY"}
DEFAULT_BATCH = BuildConfig.model_fields["batch"].default
DEFAULT_WORKSPACE_MIB = 1024
MAX_OPT_LEVEL = 5  # IBuilderConfig.builder_optimization_level: 0..5, default 3 (TensorRT Python API docs)


@dataclass(frozen=True)
class BuildSettings:
    """Every builder setting; the engine manifest records all of them and the rebuild command replays them."""

    precision: str
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    dla_core: int | None = None
    gpu_fallback: bool = False
    sparsity: bool = False
    timing_cache: Path | None = None
    batch: tuple[int, int, int] = DEFAULT_BATCH
    opt_level: int | None = None
    version_compatible: bool = False
    hardware_compat: str = "none"
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["timing_cache"] = None if self.timing_cache is None else str(self.timing_cache)
        data["batch"] = list(self.batch)
        return data

    def cli_flags(self) -> list[str]:
        """The `edgepipe build` options that reproduce these settings (for the rebuild command)."""
        flags = ["--precision", self.precision]
        if self.target:
            flags += ["--target", self.target]
        flags += ["--workspace", str(self.workspace_mib)]
        if self.dla_core is not None:
            flags += ["--dla-core", str(self.dla_core)]
        if self.gpu_fallback:
            flags.append("--gpu-fallback")
        if self.sparsity:
            flags.append("--sparsity")
        if self.timing_cache is not None:
            flags += ["--timing-cache", str(self.timing_cache)]
        flags += ["--batch", ":".join(str(b) for b in self.batch)]
        if self.opt_level is not None:
            flags += ["--opt-level", str(self.opt_level)]
        if self.version_compatible:
            flags.append("--version-compatible")
        if self.hardware_compat != "none":
            flags += ["--hardware-compat", self.hardware_compat]
        return flags


def parse_batch(text: str) -> tuple[int, int, int]:
    """ "1:16:64" -> (1, 16, 64); "8" -> (8, 8, 8) (a static batch)."""
    parts = text.split(":")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise EdgepipeError(
            f"--batch {text!r} must be MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX (e.g. 1:16:64)"
        )
    return values[0], values[1], values[2]


def check_settings(settings: BuildSettings) -> None:
    """Combinations that no TensorRT accepts, refused with what to do instead."""
    if settings.precision not in PRECISIONS:
        raise EdgepipeError(
            f"precision {settings.precision!r} unknown; choose one of {', '.join(PRECISIONS)}"
        )
    if settings.workspace_mib < 1:
        raise EdgepipeError(f"--workspace {settings.workspace_mib} MiB must be at least 1")
    if settings.gpu_fallback and settings.dla_core is None:
        raise EdgepipeError("--gpu-fallback only applies to DLA builds; add --dla-core N or drop it")
    if settings.dla_core is not None:
        if settings.dla_core < 0:
            raise EdgepipeError(f"--dla-core {settings.dla_core} must be 0 or more")
        if settings.precision == "fp32":
            # DLA runs FP16 and INT8 only (TensorRT developer guide, "Working with DLA").
            raise EdgepipeError("DLA cannot run fp32; use --precision fp16 or int8 with --dla-core")
        if settings.batch[0] != settings.batch[2]:
            # DLA loadables are built for static shapes; a dynamic profile would push every layer to the GPU.
            raise EdgepipeError(
                f"DLA needs a static batch; got --batch {':'.join(map(str, settings.batch))}, "
                f"use --batch {settings.batch[1]}:{settings.batch[1]}:{settings.batch[1]}"
            )
    if settings.opt_level is not None and not 0 <= settings.opt_level <= MAX_OPT_LEVEL:
        raise EdgepipeError(f"--opt-level {settings.opt_level} must be between 0 and {MAX_OPT_LEVEL}")
    if settings.hardware_compat not in HARDWARE_COMPAT_LEVELS:
        raise EdgepipeError(
            f"--hardware-compat {settings.hardware_compat!r} unknown; "
            f"choose one of {', '.join(HARDWARE_COMPAT_LEVELS)}"
        )
    if settings.hardware_compat != "none" and settings.dla_core is not None:
        raise EdgepipeError("--hardware-compat does not apply to DLA engines; drop one of them")


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


def default_workspace_mib(device_memory_mib: int | None) -> int:
    """1 GiB, but never more than a quarter of the device's memory (Jetsons share it with the CPU)."""
    if device_memory_mib is None:
        return DEFAULT_WORKSPACE_MIB
    return max(64, min(DEFAULT_WORKSPACE_MIB, device_memory_mib // 4))
