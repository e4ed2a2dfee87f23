"""torchvision / timm backbones through channel pruning and ONNX: pruned for real, or refused in one line.

A representative slice of benchmarks/backbone_sweep.py (which runs every torchvision classifier and the timm
families): a residual net, a squeeze-excite MobileNet, SqueezeNet's concatenating fire modules, a ViT, and
ShuffleNet's channel shuffle, which torch-pruning cannot follow and is refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgepipe.complexity import count_macs_params
from edgepipe.errors import EdgepipeError
from edgepipe.models import build_model
from edgepipe.pruning.channel import ChannelOptions, build_pruner, check_prunable, pruning_step
from edgepipe.pruning.replay import history_to_json, rebuild, rebuild_record

pytestmark = pytest.mark.integration

SHAPE = [3, 64, 64]
OPTIONS = ChannelOptions(importance="l1", global_pruning=False, round_to=8)


def _spec(name: str, params: dict | None = None) -> dict:
    return {"name": name, "params": params or {}, "input_shape": SHAPE, "num_classes": 3}


def _prune(spec: dict, ratio: float = 0.3):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    check_prunable(model, spec["name"], "l1", SHAPE)
    pruner = build_pruner(model, SHAPE, dataclasses.replace(OPTIONS, model_name=spec["name"]), ratio=ratio, steps=1)
    pruning_step(pruner, model, "l1", None)
    return model.eval(), history_to_json(pruner.pruning_history())


def _onnx_outputs(model, x: torch.Tensor, path: Path, exporter: str) -> np.ndarray:
    from edgepipe.onnx_export import INPUT_NAME, export_onnx
    from edgepipe.recipe import ExportConfig
    from edgepipe.runners.onnxruntime import OrtRunner

    [name] = export_onnx(model, x[:2], path, ExportConfig(exporter=exporter))
    with OrtRunner(path, threads=2) as runner:
        return runner.infer({INPUT_NAME: x.numpy()})[name]


PRUNED = {
    "torchvision:resnet18": ({}, "torchscript"),
    "torchvision:mobilenet_v3_small": ({}, "torchscript"),
    "torchvision:squeezenet1_1": ({}, "torchscript"),
    "timm:vit_tiny_patch16_224": ({"depth": 2}, "dynamo"),  # the project's default exporter on the newest graph
}


@pytest.mark.parametrize("name", sorted(PRUNED))
def test_backbone_prunes_runs_replays_and_exports(name, tmp_path):
    params, exporter = PRUNED[name]
    spec = _spec(name, params)
    macs_before = count_macs_params(build_model(spec), SHAPE)[0]
    model, history = _prune(spec)
    macs_after = count_macs_params(model, SHAPE)[0]
    assert history and macs_after < 0.85 * macs_before

    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    # what loading the pruned checkpoint does: a fresh build, reshaped by the JSON history, then the tensors
    fresh = rebuild(build_model(spec), json.loads(json.dumps(rebuild_record(SHAPE, history))))
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), logits)
    np.testing.assert_allclose(_onnx_outputs(model, x, tmp_path / "pruned.onnx", exporter), logits.numpy(),
                               rtol=1e-3, atol=1e-4)


def test_vit_keeps_its_heads_whole_and_narrows_the_rest():
    model, _ = _prune(_spec("timm:vit_tiny_patch16_224", {"depth": 2}))
    for block in model.blocks:
        assert block.attn.qkv.out_features == 3 * 192 and block.attn.num_heads == 3  # 3 heads of 64, untouched
        assert block.attn.qkv.in_features == block.attn.proj.out_features == model.patch_embed.proj.out_channels
        assert block.mlp.fc1.out_features < 768
    assert model.patch_embed.proj.out_channels < 192
    assert model.pos_embed.shape[-1] == model.cls_token.shape[-1] == model.patch_embed.proj.out_channels


def test_shufflenet_is_refused_in_one_line_naming_the_shuffle():
    torch.manual_seed(0)
    name = "torchvision:shufflenet_v2_x0_5"
    model = build_model(_spec(name)).eval()
    with pytest.raises(EdgepipeError) as refused:
        check_prunable(model, name, "l1", SHAPE)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"model '{name}' is not prunable by channels: its InvertedResidual layer 'stage2.0' "
                              "reshapes channels into groups, a channel shuffle or split")
    assert "--method 2:4" in message
    # without the check, torch-pruning's own failure (a ZeroDivisionError in its graph tracer) is one line too
    with pytest.raises(EdgepipeError) as failed:
        build_pruner(model, SHAPE, dataclasses.replace(OPTIONS, model_name=name), ratio=0.3, steps=1)
    assert "\n" not in str(failed.value) and "ZeroDivisionError" in str(failed.value)


def test_prune_cli_refuses_shufflenet_with_exit_code_2(tmp_path):
    from helpers.recipes import write_recipe

    from edgepipe.cli.main import app
    from edgepipe.recipe import load_recipe
    from edgepipe.stages.train import train

    # 28 training samples in batches of 16: no batch of one reaches BatchNorm at stage 4's 1x1 feature map
    recipe = load_recipe(write_recipe(
        tmp_path / "r.yaml", model={"name": "torchvision:shufflenet_v2_x0_5", "params": {}},
        dataset={"name": "synthetic", "samples": 40, "num_classes": 3, "shape": [3, 32, 32]},
        train={"epochs": 1, "batch_size": 16}))
    train(recipe, tmp_path / "run" / "train")
    result = CliRunner().invoke(app, ["prune", str(tmp_path / "run"), "--ratio", "0.3"])
    assert result.exit_code == 2, result.output
    assert "InvertedResidual layer 'stage2.0'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "prune").exists()


def test_a_pipeline_that_would_prune_shufflenet_is_refused_before_training(tmp_path):
    """Before: refused by the prune stage after training and export (98 s at 64 px); now by the recipe check."""
    from helpers.recipes import write_recipe

    from edgepipe.cli.main import app

    recipe = write_recipe(
        tmp_path / "r.yaml", model={"name": "torchvision:shufflenet_v2_x0_5", "params": {}},
        dataset={"name": "synthetic", "samples": 40, "num_classes": 3, "shape": [3, 32, 32]},
        train={"epochs": 1, "batch_size": 16}, prune={"method": "channel", "ratio": 0.3, "finetune_epochs": 0})
    result = CliRunner().invoke(app, ["pipeline", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "InvertedResidual layer 'stage2.0'" in lines[0], result.stderr
    assert not (tmp_path / "run" / "train").exists()
