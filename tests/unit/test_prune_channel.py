"""Channel pruning on tiny zoo models: every model prunes, shrinks, and reloads from the JSON history alone."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from edgepipe.complexity import count_macs_params
from edgepipe.errors import EdgepipeError
from edgepipe.models import build_model
from edgepipe.pruning.channel import (
    build_pruner,
    check_prunable,
    one_shot_macs,
    pruning_step,
    resolve_ignored,
    search_ratio,
)
from edgepipe.pruning.replay import history_to_json, rebuild, rebuild_record

IMAGE = [1, 16, 16]
ZOO_CASES = {
    "mlp": {"hidden": [64, 32]},
    "lenet5": {"batch_norm": True},
    "resnet": {"width": 16, "blocks": [1, 1]},
    "vgg": {"widths": [16, 32]},
    "mobilenetv2": {"width_mult": 0.5},
}
OPTIONS = {"importance": "l1", "global_pruning": False, "round_to": 8, "ignored": []}


def _model(name: str, params: dict, shape=IMAGE) -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    spec = {"name": name, "params": params, "input_shape": list(shape), "num_classes": 10}
    model = build_model(spec)
    # Non-trivial BatchNorm statistics, so a wrong replay would show in the outputs.
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.1, 1.0)
    return model.eval(), spec


def _prune(model: nn.Module, shape, ratio: float, **overrides) -> list:
    options = {**OPTIONS, **overrides}
    pruner = build_pruner(model, shape, ratio=ratio, steps=1, **options)
    pruning_step(pruner, model, options["importance"], None)
    return history_to_json(pruner.pruning_history())


@pytest.mark.parametrize("name", sorted(ZOO_CASES))
def test_every_zoo_model_prunes_and_replays_from_json(name):
    model, spec = _model(name, ZOO_CASES[name])
    macs_before, params_before = count_macs_params(model, IMAGE)
    history = _prune(model, IMAGE, 0.5)
    macs_after, params_after = count_macs_params(model, IMAGE)
    assert macs_after < 0.75 * macs_before and params_after < params_before
    assert history, "torch-pruning recorded no pruned group"

    # What load_model does: fresh zoo model -> replay the JSON history -> load the tensors.
    record = json.loads(json.dumps(rebuild_record(IMAGE, history)))
    fresh = rebuild(build_model(spec), record)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    x = torch.randn(4, *IMAGE)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))
    assert count_macs_params(fresh, IMAGE) == (macs_after, params_after)


def test_the_classifier_keeps_its_outputs_and_residual_adds_stay_consistent():
    model, _ = _model("resnet", {"width": 16, "blocks": [1, 1]})
    _prune(model, IMAGE, 0.5)
    assert model.classifier.out_features == 10
    block = model.stages[0]  # identity shortcut: the add ties stem and block output channels together
    assert block.conv2.out_channels == model.stem[0].out_channels == 8
    assert model(torch.randn(2, *IMAGE)).shape == (2, 10)


def test_depthwise_convolutions_keep_groups_equal_to_channels():
    model, _ = _model("mobilenetv2", {"width_mult": 0.5})
    _prune(model, IMAGE, 0.5)
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)


def test_round_to_keeps_nearest_multiples_and_never_empties_a_narrow_layer():
    # lenet5's first conv has 6 channels: torch-pruning's rounding down to a multiple of 8 would leave 0.
    model, _ = _model("lenet5", {})
    _prune(model, IMAGE, 0.5)
    assert model.features[0].out_channels == 6
    assert model.features[4].out_channels == 8  # 16 * 0.5 = 8
    wide, _ = _model("vgg", {"widths": [32, 64]})
    _prune(wide, IMAGE, 0.3)  # keep 32 * 0.7 = 22.4 -> 24 (nearest 8); 64 * 0.7 = 44.8 -> 48
    convs = [m.out_channels for m in wide.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [24, 24, 48, 48]
    tiny_step, _ = _model("vgg", {"widths": [32, 64]})
    _prune(tiny_step, IMAGE, 0.05)  # 30.4 -> 32, 60.8 -> 64: too little to remove a whole multiple of 8
    assert [m.out_channels for m in tiny_step.modules() if isinstance(m, nn.Conv2d)] == [32, 32, 64, 64]


def test_ignored_layers_keep_their_channels():
    model, _ = _model("vgg", {"widths": [16, 32]})
    _prune(model, IMAGE, 0.5, ignored=["features.0"])
    assert model.features[0].out_channels == 16
    assert model.features[3].out_channels == 8


def test_unknown_layer_name_lists_real_names():
    model, _ = _model("vgg", {"widths": [16, 32]})
    with pytest.raises(EdgepipeError, match=r"no layer named 'features\.99'.*features\.0, features\.3"):
        resolve_ignored(model, ["features.99"])


def test_user_sequential_model_ignores_its_last_linear_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))
    assert list(resolve_ignored(model, [])) == ["5"]
    _prune(model, [1, 8, 8], 0.5)
    assert model[5].out_features == 3 and model[1].out_features == 16


def test_global_and_taylor_importance_run():
    model, _ = _model("vgg", {"widths": [16, 32]})
    before = count_macs_params(model, IMAGE)[0]
    pruner = build_pruner(model, IMAGE, ratio=0.4, steps=1, **{**OPTIONS, "importance": "taylor",
                                                               "global_pruning": True})
    x, y = torch.randn(8, *IMAGE), torch.randint(0, 10, (8,))
    batches = [lambda trial: torch.nn.functional.cross_entropy(trial(x), y)]  # the task's loss on one batch
    pruning_step(pruner, model, "taylor", lambda: batches)
    assert count_macs_params(model, IMAGE)[0] < before
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("target", [0.5, 0.3])
def test_search_ratio_meets_the_mac_target_with_the_smallest_ratio(target):
    model, _ = _model("resnet", {"width": 16, "blocks": [1, 1]})
    base = count_macs_params(model, IMAGE)[0]
    ratio, achieved = search_ratio(model, IMAGE, target, **OPTIONS)
    assert achieved <= target
    assert one_shot_macs(model, IMAGE, ratio, **OPTIONS) / base == pytest.approx(achieved)
    # just below the found ratio the target is missed: the search returned the smallest ratio that meets it
    assert one_shot_macs(model, IMAGE, ratio - 0.001, **OPTIONS) / base > target
    assert count_macs_params(model, IMAGE)[0] == base  # the searched model itself is untouched


def test_a_target_reachable_below_the_largest_ratio_is_found():
    """LeNet with round_to 1: MACs fall until ~0.8, then rise again as whole layers are left alone (0.95 keeps
    81 %). A bisection from the largest ratio called 20 % impossible; the scan finds it."""
    model, _ = _model("lenet5", {})
    options = {**OPTIONS, "round_to": 1}
    base = count_macs_params(model, IMAGE)[0]
    assert one_shot_macs(model, IMAGE, 0.95, **options) / base > 0.5  # the non-monotonic part
    ratio, achieved = search_ratio(model, IMAGE, 0.2, **options)
    assert achieved <= 0.2 and ratio < 0.8
    assert one_shot_macs(model, IMAGE, ratio - 0.001, **options) / base > 0.2


def test_unreachable_mac_target_is_a_user_error():
    model, _ = _model("lenet5", {})
    with pytest.raises(EdgepipeError, match="target_macs 0.01"):
        search_ratio(model, IMAGE, 0.01, **OPTIONS)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_recurrent_models_are_refused_with_the_reason(name):
    model, _ = _model(name, {"hidden": 32}, shape=[8, 8])
    with pytest.raises(EdgepipeError, match=r"not prunable by channels: its (LSTM|GRU) layer 'rnn'"):
        check_prunable(model, name, "l1")


def test_bn_scale_needs_batchnorm():
    model, _ = _model("lenet5", {})
    with pytest.raises(EdgepipeError, match="no BatchNorm"):
        check_prunable(model, "lenet5", "bn_scale")
    check_prunable(copy.deepcopy(_model("vgg", {"widths": [16]})[0]), "vgg", "bn_scale")


def test_batchnorm_recalibration_re_estimates_statistics_and_changes_nothing_else():
    from edgepipe.pruning.channel import recalibrate_batchnorm

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, momentum=0.1), nn.ReLU()).train()
    norm = model[1]
    norm.running_mean.fill_(5.0)  # stale statistics, as after removing channels upstream
    norm.running_var.fill_(9.0)
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    inputs = torch.randn(320, 1, 8, 8) * 2 + 1  # equal batches: the running average weighs batches
    assert recalibrate_batchnorm(model, inputs, batch_size=64)
    with torch.no_grad():
        features = model[0](inputs)
    assert torch.allclose(norm.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(norm.running_var, features.var(dim=(0, 2, 3)), rtol=1e-2)
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())
    assert norm.momentum == 0.1 and model.training and norm.training
    assert not recalibrate_batchnorm(nn.Sequential(nn.Linear(3, 2)), torch.randn(4, 3))
