"""The recipe's prune section: depth (residual blocks), width (a ratio, a MAC target or a latency target on the
runtime that will run the model) or 2:4 sparsity, and the fine-tune with its distillation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from edgepipe import defaults
from edgepipe.recipe.base import (
    BatchSize,
    Section,
    distill_alpha_field,
    distill_mode_field,
    distill_temperature_field,
)


class PruneConfig(Section):
    method: Literal["channel", "2:4"] = Field(default=defaults.PRUNE["method"],
                                              description="channel: remove whole channels; "
                                              "2:4: zero 2 of every 4 input weights (TensorRT sparse tensor cores)")
    importance: Literal["l1", "l2", "bn_scale", "taylor"] = defaults.PRUNE["importance"]
    ratio: float | None = Field(default=defaults.PRUNE["ratio"], gt=0, lt=1, description="fraction of channels removed")
    remove_blocks: int | list[str] | None = Field(
        default=defaults.PRUNE["remove_blocks"], description="depth pruning before the channels: remove the N "
        "residual blocks that cost least on val, or the blocks named (module names); identity shortcuts only")
    target_latency_ms: float | None = Field(
        default=defaults.PRUNE["target_latency_ms"], gt=0, description="p50 ms per call to reach on latency_runtime at "
        "latency_batch: the least pruning whose measured latency meets it (the channel ratio is searched)")
    target_macs: float | None = Field(default=defaults.PRUNE["target_macs"], gt=0, lt=1, validate_default=True,
                                      description="keep this fraction of MACs (the channel ratio is searched)")
    global_pruning: bool = defaults.PRUNE["global_pruning"]
    round_to: int = Field(default=defaults.PRUNE["round_to"], ge=1,
                          description="kept channels are a multiple of this (SIMD/tensor cores)")
    ignore_layers: list[str] = Field(default_factory=list, description="module names never pruned")
    steps: int = Field(default=defaults.PRUNE["steps"], ge=1,
                       description="iterative pruning: steps, each followed by fine-tuning")
    finetune_epochs: int = Field(default=defaults.PRUNE["finetune_epochs"], ge=0,
                                 description="epochs of fine-tuning after each step")
    finetune_lr: float | None = Field(default=defaults.PRUNE["finetune_lr"], gt=0, description="default: train.lr / 10")
    latency_batch: BatchSize = Field(default=defaults.PRUNE["latency_batch"],
                                     description="the deploy batch: the latency target and per-layer latency are "
                                     "timed at it")
    latency_runtime: Literal["onnxruntime", "openvino", "tensorrt"] = Field(
        default=defaults.PRUNE["latency_runtime"], description="the runtime that will run the artifact: the latency "
        "target and the per-layer latency are measured on it (tensorrt: a trtexec profile, a proxy)")
    latency_profile: str | None = Field(
        default=defaults.PRUNE["latency_profile"], description="tensorrt: `trtexec --exportProfile` JSON of the "
        "unpruned model, made on the device; its per-layer times x kept MACs are the declared proxy")
    distill: Literal["auto", "on", "off"] = distill_mode_field(defaults.PRUNE["distill"], "the fine-tune")
    distill_alpha: float = distill_alpha_field(defaults.PRUNE["distill_alpha"])
    distill_temperature: float = distill_temperature_field(defaults.PRUNE["distill_temperature"])

    @field_validator("method", mode="before")
    @classmethod
    def _yaml_sexagesimal(cls, method: Any) -> Any:
        # YAML 1.1 reads an unquoted 2:4 as the base-60 integer 124.
        return "2:4" if method == 124 else method

    @field_validator("steps")
    @classmethod
    def _one_step_for_2_4(cls, steps: int, info: ValidationInfo) -> int:
        if steps > 1 and info.data.get("method") == "2:4":
            # One mask of fixed density (2 of every 4 weights): there is no schedule to iterate.
            raise ValueError("2:4 sparsity is applied in one step; drop steps (or use method: channel)")
        return steps

    @field_validator("ratio")
    @classmethod
    def _ratio_for_channels(cls, ratio: float | None, info: ValidationInfo) -> float | None:
        if ratio is not None and info.data.get("method") == "2:4":
            raise ValueError("2:4 sparsity always zeroes half the weights; drop ratio (or use method: channel)")
        return ratio

    @field_validator("target_macs")
    @classmethod
    def _one_target(cls, target: float | None, info: ValidationInfo) -> float | None:
        method, ratio = info.data.get("method"), info.data.get("ratio")
        if method == "2:4":
            if target is not None:
                raise ValueError("2:4 sparsity always zeroes half the weights; drop target_macs")
        elif target is not None and ratio is not None:
            raise ValueError("give either ratio or target_macs, not both")
        elif target is not None and info.data.get("target_latency_ms") is not None:
            # one target decides the ratio: a MAC cap beside a latency target would overrule "the least pruning that
            # meets the latency" without saying which of the two chose the model
            raise ValueError("give either target_latency_ms or target_macs, not both")
        elif (target is None and ratio is None and "ratio" in info.data and info.data.get("target_latency_ms") is None
              and info.data.get("remove_blocks") is None):
            raise ValueError("channel pruning needs a target: ratio (channels removed), target_macs (MACs kept), "
                             "target_latency_ms (ms per call on a runtime) or remove_blocks (residual blocks removed)")
        return target

    @field_validator("target_latency_ms")
    @classmethod
    def _latency_target(cls, target: float | None, info: ValidationInfo) -> float | None:
        if target is not None and info.data.get("method") == "2:4":
            raise ValueError("a latency target searches a channel ratio; 2:4 sparsity has none (use method: channel)")
        if target is not None and info.data.get("ratio") is not None:
            raise ValueError("give either ratio or target_latency_ms, not both")
        return target

    @field_validator("latency_profile")
    @classmethod
    def _profile_for_tensorrt(cls, profile: str | None, info: ValidationInfo) -> str | None:
        if profile is not None and info.data.get("latency_runtime") != "tensorrt":
            raise ValueError("a trtexec profile goes with latency_runtime tensorrt")
        return profile

    @field_validator("distill")
    @classmethod
    def _distill_needs_finetune(cls, distill: str, info: ValidationInfo) -> str:
        if distill == "on" and info.data.get("finetune_epochs") == 0:
            raise ValueError("distillation happens during the fine-tune, and finetune_epochs is 0; give fine-tuning "
                             "epochs or drop distill")
        return distill

    @field_validator("remove_blocks", mode="before")
    @classmethod
    def _one_block_name(cls, blocks: Any) -> Any:
        if isinstance(blocks, bool):  # YAML's `yes` is not a number of blocks
            raise ValueError("remove_blocks: a number of blocks or a list of block (module) names")
        if isinstance(blocks, str):  # one name, or a number the command line passed as text
            return int(blocks) if blocks.isdigit() else [blocks]
        return blocks

    @field_validator("remove_blocks")
    @classmethod
    def _blocks_to_remove(cls, blocks: int | list[str] | None, info: ValidationInfo) -> int | list[str] | None:
        if blocks is None:
            return None
        if info.data.get("method") == "2:4":
            raise ValueError("2:4 sparsity keeps every layer; drop remove_blocks (or use method: channel)")
        if isinstance(blocks, int) and blocks < 1:
            raise ValueError("remove_blocks: a number of blocks is 1 or more")
        if isinstance(blocks, list) and (not blocks or len(set(blocks)) != len(blocks)):
            raise ValueError("remove_blocks: list each block (module name) once")
        return blocks
