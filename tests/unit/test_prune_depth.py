"""Depth pruning: which residual blocks can go (and why not), their ranking, removal, replay, config, the stage."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
import torch
from helpers.recipes import write_recipe
from torch import nn
from typer.testing import CliRunner

import edgepipe.stages.prune as prune_stage
from edgepipe.artifacts import read_manifest
from edgepipe.checkpoint import load_model
from edgepipe.cli.main import app
from edgepipe.errors import EdgepipeError
from edgepipe.models.mobilenet import MobileNetV2
from edgepipe.models.resnet import BasicBlock, ResNet
from edgepipe.pruning.channel import ChannelOptions, build_pruner, pruning_step
from edgepipe.pruning.depth import (
    BLOCK_KINDS,
    BlockKind,
    check_request,
    rank_blocks,
    rank_correlation,
    remove_blocks,
    residual_ratios,
    survey_blocks,
)
from edgepipe.pruning.measure import export_for_timing
from edgepipe.pruning.replay import history_to_json, rebuild, rebuild_record
from edgepipe.recipe import PruneConfig, load_recipe
from edgepipe.stages.prune import prune
from edgepipe.stages.train import train

SHAPE = (1, 12, 12)


def _resnet() -> ResNet:
    torch.manual_seed(0)
    return ResNet(SHAPE, 4, width=8, blocks=(2, 2, 2)).eval()


def _conv_nodes(model: nn.Module, input_shape, path: Path) -> int:
    graph = onnx.load(str(export_for_timing(model, input_shape, path))).graph
    return sum(node.op_type == "Conv" for node in graph.node)


def test_resnet_blocks_with_identity_shortcuts_are_removable_and_projections_are_refused():
    survey = survey_blocks(_resnet(), SHAPE)
    assert survey.names() == ["stages.0", "stages.1", "stages.3", "stages.5"]
    refused = {r.name: r for r in survey.refused}
    assert set(refused) == {"stages.2", "stages.4"}
    assert refused["stages.2"].describe() == ("changes stride or width (projection shortcut): "
                                              "[8, 12, 12] -> [16, 6, 6]")
    assert survey.refusal_line() == "stages.2, stages.4 change stride or width (projection shortcut)"


def test_mobilenetv2_inverted_residuals_without_a_skip_are_refused():
    survey = survey_blocks(MobileNetV2((1, 28, 28), 10).eval(), (1, 28, 28))
    assert survey.names() == ["features.3", "features.5", "features.7"]
    assert survey.refusal_line() == ("features.1, features.2, features.4, features.6 change stride or width "
                                     "(no shortcut)")


@pytest.mark.parametrize("name, removable, refused", [
    ("resnet18", ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"], ["layer2.0", "layer3.0", "layer4.0"]),
    ("mobilenet_v3_small", ["features.3", "features.5", "features.6", "features.8", "features.10", "features.11"],
     ["features.1", "features.2", "features.4", "features.7", "features.9"]),
])
def test_torchvision_blocks(name, removable, refused):
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.get_model(name, weights=None, num_classes=3).eval()
    survey = survey_blocks(model, (3, 32, 32))
    assert survey.names() == removable and [r.name for r in survey.refused] == refused
    remove_blocks(model, survey.names(), (3, 32, 32))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_convnext_blocks_are_all_removable():
    convnext = pytest.importorskip("torchvision.models.convnext")
    stack = nn.Sequential(nn.Conv2d(3, 16, 1), *(convnext.CNBlock(16, 1e-6, 0.0) for _ in range(2)))
    assert survey_blocks(stack, (3, 8, 8)).names() == ["1", "2"]


@pytest.mark.parametrize("name, removable", [
    ("resnet18", ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]),
    ("mobilenetv3_small_050",  # blocks.3.0 keeps width at _050 (24 -> 24 channels), so it keeps its skip
     ["blocks.1.1", "blocks.2.1", "blocks.2.2", "blocks.3.0", "blocks.3.1", "blocks.4.1", "blocks.4.2"]),
])
def test_timm_blocks(name, removable):
    timm = pytest.importorskip("timm")
    assert survey_blocks(timm.create_model(name, num_classes=3).eval(), (3, 32, 32)).names() == removable


def test_removing_blocks_keeps_the_network_valid_with_fewer_convs(tmp_path):
    model = _resnet()
    before = _conv_nodes(model, SHAPE, tmp_path / "before.onnx")
    remove_blocks(model, ["stages.1", "stages.5"], SHAPE)
    assert isinstance(model.stages[1], nn.Identity) and isinstance(model.stages[5], nn.Identity)
    assert model(torch.randn(2, *SHAPE)).shape == (2, 4)
    assert _conv_nodes(model, SHAPE, tmp_path / "after.onnx") == before - 4


def test_relu_after_add_block_with_a_silent_branch_removes_exactly():
    """act(x + F(x)) with F = 0 is x when x is post-ReLU: the block's removal then changes nothing."""
    model = _resnet()
    with torch.no_grad():
        model.stages[3].bn2.weight.zero_()
        model.stages[3].bn2.bias.zero_()
    x = torch.randn(5, *SHAPE)
    expected = model(x)
    trial = remove_blocks(_copy(model), ["stages.3"], SHAPE)
    assert torch.allclose(trial(x), expected, atol=1e-6)
    # and the ranking finds it the cheapest, the proxy sees it change nothing, the model is left alone
    ranked = rank_blocks(model, survey_blocks(model, SHAPE).removable,
                         lambda m: -float((m(x) - expected).abs().max().detach()))
    assert ranked[0].block.name == "stages.3" and ranked[0].score == 0.0
    assert all(later.score < 0 for later in ranked[1:])
    assert [cost.score for cost in ranked] == sorted((cost.score for cost in ranked), reverse=True)
    assert isinstance(model.stages[3], BasicBlock)
    ratios = residual_ratios(model, survey_blocks(model, SHAPE).removable, [x])
    assert ratios["stages.3"] == 0.0 and min(v for k, v in ratios.items() if k != "stages.3") > 0


def _copy(model):
    import copy

    return copy.deepcopy(model)


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 1, 2, 3], [5, 5, 6, 7]) == pytest.approx(1.0)  # ties share a rank
    assert rank_correlation([1, 2], [1, 2]) is None and rank_correlation([1, 1, 1], [1, 2, 3]) is None


def test_refusals_name_the_blocks_and_why():
    stack = nn.Sequential(BasicBlock(1, 8, 2), BasicBlock(8, 16, 2))
    with pytest.raises(EdgepipeError, match=r"^model 'pair' has no removable block: 0, 1 change stride or width "
                                            r"\(projection shortcut\)$"):
        check_request(survey_blocks(stack, SHAPE), 1, "pair")
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    with pytest.raises(EdgepipeError, match="has no removable block: it has no residual block of a known kind"):
        check_request(survey_blocks(plain, SHAPE), 1, "plain")
    survey = survey_blocks(_resnet(), SHAPE)
    with pytest.raises(EdgepipeError, match=r"remove_blocks 5: model 'resnet' has only 4 removable blocks "
                                            r"\(stages.0, stages.1, stages.3, stages.5\)"):
        check_request(survey, 5, "resnet")
    with pytest.raises(EdgepipeError, match=r"'stages.2' is not a removable block \(changes stride or width "
                                            r"\(projection shortcut\): .*removable: stages.0, stages.1"):
        check_request(survey, ["stages.1", "stages.2"], "resnet")
    with pytest.raises(EdgepipeError, match="'nope' is not a removable block; removable: stages.0"):
        check_request(survey, ["nope"], "resnet")
    check_request(survey, ["stages.1", "stages.5"], "resnet")  # fine


def test_a_block_inside_ignore_layers_is_kept():
    survey = survey_blocks(_resnet(), SHAPE, ignored=["stages.1.conv2"])
    assert "stages.1" not in survey.names()
    assert {r.name: r.describe() for r in survey.refused}["stages.1"] == ("holds a layer in ignore_layers: "
                                                                          "stages.1.conv2")


def test_an_identity_claim_the_shapes_contradict_fails_loudly(monkeypatch):
    monkeypatch.setitem(BLOCK_KINDS, "edgepipe.models.resnet.BasicBlock", BlockKind(lambda block: True, ""))
    with pytest.raises(EdgepipeError, match=r"block 'stages.2' .* maps \[8, 12, 12\] -> \[16, 6, 6\]: a variant"):
        survey_blocks(_resnet(), SHAPE)



def _half_the_channels(model) -> list:
    """Width-prune ``model`` in place (half the channels, l1, one step); its recorded history."""
    pruner = build_pruner(model, SHAPE, ChannelOptions(round_to=1), ratio=0.5, steps=1)
    pruning_step(pruner, model, "l1", None)
    return history_to_json(pruner.pruning_history())

def test_replay_removes_blocks_before_the_channel_history():
    model = _resnet()
    remove_blocks(model, ["stages.1", "stages.3"], SHAPE)
    record = rebuild_record(SHAPE, _half_the_channels(model), ["stages.1", "stages.3"])
    assert record["removed_blocks"] == ["stages.1", "stages.3"]
    fresh = rebuild(ResNet(SHAPE, 4, width=8, blocks=(2, 2, 2)), record)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(3, *SHAPE)
    assert torch.equal(fresh.eval()(x), model(x))


def test_blocks_removed_after_width_pruning_replay_depth_first():
    """Pruning a pruned model: the record still replays depth first; groups inside a removed block are skipped."""
    model = _resnet()
    history = _half_the_channels(model)
    assert any(name.startswith("stages.1.") for name, _, _ in history)  # the block's inner channels were pruned
    remove_blocks(model, ["stages.1"], SHAPE)
    fresh = rebuild(ResNet(SHAPE, 4, width=8, blocks=(2, 2, 2)), rebuild_record(SHAPE, history, ["stages.1"]))
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(3, *SHAPE)
    assert torch.equal(fresh.eval()(x), model(x))


def test_a_record_without_removed_blocks_still_loads():
    model = _resnet()
    record = rebuild_record(SHAPE, _half_the_channels(model))
    assert "removed_blocks" not in record  # what records looked like before depth pruning
    fresh = rebuild(ResNet(SHAPE, 4, width=8, blocks=(2, 2, 2)), record)
    fresh.load_state_dict(model.state_dict())
    assert isinstance(fresh.stages[1], BasicBlock)


def test_config():
    assert PruneConfig(remove_blocks=2).remove_blocks == 2  # depth only: no ratio or target_macs needed
    assert PruneConfig(remove_blocks="stages.1").remove_blocks == ["stages.1"]
    assert PruneConfig(remove_blocks=["stages.1"], target_macs=0.5).target_macs == 0.5
    assert PruneConfig(ratio=0.3).remove_blocks is None
    with pytest.raises(ValueError, match="ratio .*, target_macs .* or remove_blocks"):
        PruneConfig()
    with pytest.raises(ValueError, match="2:4 sparsity keeps every layer"):
        PruneConfig(method="2:4", remove_blocks=1)
    with pytest.raises(ValueError, match="1 or more"):
        PruneConfig(remove_blocks=0)
    with pytest.raises(ValueError, match="each block .* once"):
        PruneConfig(remove_blocks=["stages.1", "stages.1"])


@pytest.fixture(autouse=True)
def quick_latency(quick_prune_latency):
    """Prune's side-by-side timing in one short round: these tests check what it records, not the speed."""


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory) -> Path:
    """resnet width 8, blocks [2, 2, 2] on synthetic 1x12x12: 4 removable blocks, 2 projections."""
    root = tmp_path_factory.mktemp("resnet")
    model = {"name": "resnet", "params": {"width": 8, "blocks": [2, 2, 2]}}
    train(load_recipe(write_recipe(root / "recipe.yaml", model=model, train={"epochs": 2})), root / "run" / "train")
    return root / "run"


def test_stage_removes_blocks_then_channels_and_the_record_rebuilds_it(resnet_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(resnet_run, run)
    out = prune(run, run / "prune", PruneConfig(remove_blocks=2, target_macs=0.5, finetune_epochs=0))
    manifest = read_manifest(out)
    depth = manifest.metrics["depth"]
    assert len(depth["removed"]) == 2 and set(depth["costs"]) == {"stages.0", "stages.1", "stages.3", "stages.5"}
    cheapest = sorted(depth["costs"], key=lambda name: (depth["costs"][name], name))
    assert set(depth["removed"]) <= set(cheapest[:3])  # the cheapest two (ties break by model order)
    assert set(depth["refused"]) == {"stages.2", "stages.4"}
    assert set(depth["proxy"]["residual_ratio"]) == set(depth["costs"])
    assert manifest.model["rebuild"]["removed_blocks"] == depth["removed"]
    assert manifest.model["rebuild"]["history"]  # width pruning happened too
    # target_macs is of the original: the search counted what the blocks took
    assert manifest.metrics["macs"]["kept_fraction"] <= 0.5
    assert manifest.metrics["pruning"]["search"]["target_macs"] == 0.5
    pruned, _ = load_model(out)
    for name in depth["removed"]:
        assert isinstance(pruned.get_submodule(name), nn.Identity)
    assert pruned(torch.randn(2, *SHAPE)).shape == (2, 4)

    # pruning the pruned model again: the earlier blocks stay removed, a new one joins them
    again = prune(out, tmp_path / "again", PruneConfig(remove_blocks=1, finetune_epochs=0))
    removed = read_manifest(again).model["rebuild"]["removed_blocks"]
    assert removed[:2] == depth["removed"] and len(removed) == 3
    stages = load_model(again)[0].stages
    assert sum(isinstance(block, nn.Identity) for block in stages) == 3


def test_stage_depth_only_and_a_bad_request_fails_before_any_work(resnet_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(resnet_run, run)
    out = prune(run, run / "prune", PruneConfig(remove_blocks=["stages.5"], finetune_epochs=0))
    manifest = read_manifest(out)
    assert manifest.metrics["depth"]["removed"] == ["stages.5"] and manifest.model["rebuild"]["history"] == []
    assert manifest.metrics["pruning"]["ratio"] is None

    monkeypatch.setattr(prune_stage, "load_stage_dataset", lambda *a: pytest.fail("should have refused first"))
    with pytest.raises(EdgepipeError, match="'stages.2' is not a removable block"):
        prune(run, run / "bad", PruneConfig(remove_blocks=["stages.2"]))
    assert not (run / "bad").exists()


def test_cli_remove_blocks(resnet_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(resnet_run, run)
    runner = CliRunner()
    result = runner.invoke(app, ["prune", str(run), "--remove-blocks", "9"])
    assert result.exit_code == 2 and "has only 4 removable blocks" in " ".join(result.output.split())
    result = runner.invoke(app, ["prune", str(run), "--remove-blocks", "stages.1", "--remove-blocks", "stages.3",
                                 "--finetune-epochs", "0"])
    assert result.exit_code == 0, result.output
    assert "residual blocks removed" in result.output and "stages.1, stages.3" in result.output
    assert read_manifest(run / "prune").config["remove_blocks"] == ["stages.1", "stages.3"]
