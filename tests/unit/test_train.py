import shutil

import pytest
import torch
from helpers.recipes import write_recipe

from edgepipe.artifacts import read_manifest
from edgepipe.checkpoint import load_model
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import load_recipe
from edgepipe.stages.train import train

OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "adam"]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_learns_the_synthetic_task(tmp_path, optimizer):
    lr = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05, "adam": 0.01}[optimizer]
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", train={"optimizer": optimizer, "lr": lr}))
    out = train(recipe, tmp_path / "run" / "train")
    manifest = read_manifest(out)
    assert manifest.metrics["metric"] == "accuracy" and manifest.metrics["val"] >= 0.9, manifest.metrics
    assert manifest.model["input_shape"] == [1, 12, 12]
    assert manifest.artifacts[0].name == "original"


def test_training_is_deterministic_for_a_seed(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", train={"augment": True}))
    first, _ = load_model(train(recipe, tmp_path / "a" / "train"))
    second, _ = load_model(train(recipe, tmp_path / "b" / "train"))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_reuse_skips_an_up_to_date_stage(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml"))
    out = train(recipe, tmp_path / "run" / "train")
    created = read_manifest(out).created
    stamp = (out / "model.pt").stat().st_mtime_ns
    train(recipe, out, reuse=True)
    assert (out / "model.pt").stat().st_mtime_ns == stamp and read_manifest(out).created == created


def test_resume_continues_from_the_last_epoch(tmp_path, monkeypatch):
    import edgepipe.training as training

    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", train={"epochs": 4}))
    out = tmp_path / "run" / "train"
    real_score = training.score
    calls = {"n": 0}

    def crash_after_two_epochs(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_score(*args, **kwargs)

    monkeypatch.setattr(training, "score", crash_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, out)
    assert not out.exists()  # nothing half-written
    assert (tmp_path / "run" / ".train.partial" / "last.pt").is_file()
    monkeypatch.setattr(training, "score", real_score)
    train(recipe, out, resume=True)
    history = read_manifest(out).metrics["history"]
    # epochs 1-2 were not redone, and the history still lists them: the manifest tells the whole run
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    reference = train(recipe, tmp_path / "ref" / "train")
    for resumed, straight in zip(history, read_manifest(reference).metrics["history"], strict=True):
        assert resumed == pytest.approx(straight)
    resumed_model, _ = load_model(out)
    reference_model, _ = load_model(reference)
    for a, b in zip(resumed_model.state_dict().values(), reference_model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_transfer_learning_with_frozen_backbone(tmp_path):
    source = train(load_recipe(write_recipe(tmp_path / "s.yaml")), tmp_path / "src" / "train")
    recipe = load_recipe(write_recipe(
        tmp_path / "t.yaml", dataset={"num_classes": 3, "shape": [1, 12, 12]},
        train={"init_from": str(source), "freeze_backbone": True, "epochs": 2},
    ))
    out = train(recipe, tmp_path / "dst" / "train")
    manifest = read_manifest(out)
    assert manifest.transfer["copied_tensors"] >= 4 and manifest.transfer["freeze_backbone"]
    base, _ = load_model(source)
    tuned, _ = load_model(out)
    assert torch.equal(base.features[1].weight, tuned.features[1].weight)  # frozen
    assert tuned.classifier.weight.shape[0] == 3  # new head for 3 classes


def test_a_frozen_backbone_keeps_its_batchnorm_statistics(tmp_path):
    """Frozen means frozen: BatchNorm running statistics are not re-estimated on the small fine-tuning set."""
    resnet = {"name": "resnet", "params": {"width": 8}}
    source = train(load_recipe(write_recipe(tmp_path / "s.yaml", model=resnet, train={"epochs": 1})),
                   tmp_path / "src" / "train")
    recipe = load_recipe(write_recipe(
        tmp_path / "t.yaml", model=resnet, dataset={"num_classes": 3, "shape": [1, 12, 12], "samples": 200},
        train={"init_from": str(source), "freeze_backbone": True, "epochs": 1}))
    tuned, _ = load_model(train(recipe, tmp_path / "dst" / "train"))
    base, _ = load_model(source)
    assert torch.equal(base.stem[1].running_mean, tuned.stem[1].running_mean)
    assert torch.equal(base.stages[-1].bn2.running_var, tuned.stages[-1].bn2.running_var)


def test_truncated_checkpoint_is_one_line_error(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", train={"epochs": 1}))
    out = train(recipe, tmp_path / "run" / "train")
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    data = (broken / "model.pt").read_bytes()
    (broken / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgepipeError, match="not a readable edgepipe checkpoint") as info:
        load_model(broken)
    assert "\n" not in str(info.value)


def test_pickled_code_is_refused(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", train={"epochs": 1}))
    out = train(recipe, tmp_path / "run" / "train")
    model, _ = load_model(out)
    torch.save({"model": model}, out / "model.pt")  # a whole pickled module, not a state dict
    with pytest.raises(EdgepipeError, match="not a readable edgepipe checkpoint"):
        load_model(out)


def test_cuda_request_without_cuda_is_a_user_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", train={"device": "cuda"}))
    with pytest.raises(EdgepipeError, match="torch sees no CUDA GPU"):
        train(recipe, tmp_path / "run" / "train")
