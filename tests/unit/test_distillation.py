"""Distillation from the original (edgepipe.distillation): fit's mixed loss, each task's distillation term, the
config that turns it on, and the manifest record."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from edgepipe.data.base import Split
from edgepipe.distillation import AUTO_DISTILL, distill_enabled, distill_record, teacher_for
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import PruneConfig, QuantizeConfig, TrainConfig
from edgepipe.tasks import TASKS, task_named
from edgepipe.training import FitOptions, fit, seed_everything

FEATURES, CLASSES = 8, 4


def _linear(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(FEATURES, CLASSES)


def _agreement(student: nn.Module, teacher: nn.Module, x: np.ndarray) -> float:
    with torch.no_grad():
        inputs = torch.from_numpy(x)
        return float((student(inputs).argmax(1) == teacher(inputs).argmax(1)).float().mean())


def _student_after(teacher_model: nn.Module | None, alpha: float = 1.0):
    """A linear student fitted on labels that have nothing to do with the teacher, with or without distilling."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, FEATURES)).astype(np.float32)
    noise_labels = rng.integers(0, CLASSES, 256)
    reference = _linear(seed=1)
    with torch.no_grad():
        teacher_labels = reference(torch.from_numpy(x)).argmax(1).numpy()
    # val asks for the teacher's answers: fit keeps its best epoch by val, the same for both students
    train_split, val_split = Split(x, noise_labels), Split(x[:64], teacher_labels[:64])
    seed_everything(0)
    student = _linear(seed=2)
    config = TrainConfig(epochs=4, batch_size=32, lr=0.05, optimizer="adam", augment=False)
    task = task_named("classification")
    teacher = teacher_for(teacher_model, "prune", "on", alpha, 2.0, task) if teacher_model is not None else None
    result = fit(student, train_split, val_split, config, task,
                 FitOptions(device=torch.device("cpu"), teacher=teacher, progress_label="test"))
    return student, reference, x, result


def test_fit_with_a_teacher_moves_the_student_toward_it_and_logs_both_losses():
    reference = _linear(seed=1)
    distilled, _, x, result = _student_after(reference)
    plain, _, _, plain_result = _student_after(None)
    assert _agreement(distilled, reference, x) >= 0.9 > _agreement(plain, reference, x) + 0.3
    first, last = result.history[0], result.history[-1]
    assert {"train_task_loss", "train_distill_loss"} <= first.keys()
    assert last["train_distill_loss"] < first["train_distill_loss"] / 2
    # alpha 1: the loss is the distillation term alone
    assert first["train_loss"] == pytest.approx(first["train_distill_loss"])
    assert "train_distill_loss" not in plain_result.history[0]  # no teacher: the record is as before


def test_the_teacher_stays_frozen_and_alpha_mixes_the_two_terms():
    reference = _linear(seed=1)
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    _, _, _, result = _student_after(reference, alpha=0.25)
    for name, value in reference.state_dict().items():  # teacher_for copied it: the caller's model is untouched
        assert torch.equal(value, before[name]), name
    record = result.history[0]
    assert record["train_loss"] == pytest.approx(0.25 * record["train_distill_loss"]
                                                 + 0.75 * record["train_task_loss"], rel=1e-5)
    teacher = teacher_for(reference, "prune", "on", 0.5, 4.0, task_named("classification"))
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())


def test_classification_distils_temperature_softened_logits_scaled_by_t_squared():
    loss = task_named("classification").distill_loss(4.0)
    teacher = torch.tensor([[4.0, 0.0, -2.0], [0.5, 1.0, 3.0]])
    student = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 1.0]], requires_grad=True)
    p = torch.softmax(teacher / 4, 1)
    expected = (p * (p.log() - torch.log_softmax(student / 4, 1))).sum(1).mean() * 16
    value = loss(student, teacher)
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float(loss(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)
    value.backward()  # descending the gradient brings the student's softened distribution toward the teacher's
    with torch.no_grad():
        assert float(loss(student - 0.5 * student.grad, teacher)) < float(value)


def test_reconstruction_distils_the_teachers_output_by_mse():
    loss = task_named("reconstruction").distill_loss(4.0)
    student, teacher = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    assert float(loss(student, teacher)) == pytest.approx(0.25)


def test_detection_distils_the_raw_head_maps_of_an_eval_mode_teacher():
    from edgepipe.models.detector import CenterNet

    task = task_named("detection", {"size": [32, 32]})
    torch.manual_seed(0)
    teacher = CenterNet((1, 32, 32), num_classes=3, width=8).eval()
    inputs = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        maps = task.teacher_outputs(teacher, inputs)
    student = teacher.train()(inputs)  # what fit's training outputs look like
    assert maps.keys() == student.keys() and all(maps[k].shape == student[k].shape for k in maps)
    loss = task.distill_loss(4.0)
    assert float(loss(maps, maps)) == 0.0
    assert float(loss({k: v.detach() for k, v in student.items()}, maps)) > 0  # train-mode BN: other maps
    # a box-map difference where the teacher sees no centre costs nothing; where it sees one, it costs
    heat = torch.full((1, 3, 8, 8), -20.0)
    heat[0, 1, 2, 3] = 20.0
    teacher_maps = {"heatmap": heat, "box": torch.zeros(1, 4, 8, 8)}
    off_centre, on_centre = torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8)
    off_centre[0, :, 6, 6] = 5.0
    on_centre[0, :, 2, 3] = 5.0
    assert float(loss({"heatmap": heat, "box": off_centre}, teacher_maps)) < 1e-6
    assert float(loss({"heatmap": heat, "box": on_centre}, teacher_maps)) == pytest.approx(5.0, rel=1e-3)
    with pytest.raises(EdgepipeError, match="raw head maps.*distill: off"):
        task.teacher_outputs(nn.Conv2d(1, 1, 1), inputs)


def test_every_task_says_what_it_distils_and_auto_decides_for_each():
    kinds = {name: task_named(name, {"size": [32, 32]}).distill_kind for name in TASKS}
    assert len(set(kinds.values())) == len(kinds)
    assert AUTO_DISTILL.keys() == {"prune", "qat"}
    for fine_tune, decisions in AUTO_DISTILL.items():
        assert decisions.keys() == TASKS.keys()
        for name in TASKS:
            assert distill_enabled("auto", fine_tune, name) is decisions[name]
            assert distill_enabled("on", fine_tune, name) and not distill_enabled("off", fine_tune, name)


def test_the_manifest_record_names_alpha_temperature_and_kind_or_off():
    task = task_named("classification")
    assert distill_record(None, task) == "off"
    teacher = teacher_for(_linear(0), "qat", "on", 0.7, 3.0, task)
    assert distill_record(teacher, task) == {"alpha": 0.7, "temperature": 3.0, "kind": "logits-kl"}
    reconstruction = task_named("reconstruction")
    assert distill_record(teacher_for(_linear(0), "qat", "on", 0.7, 3.0, reconstruction), reconstruction) == {
        "alpha": 0.7, "temperature": None, "kind": "outputs-mse"}
    assert teacher_for(_linear(0), "prune", "off", 0.7, 3.0, task) is None


def test_distill_settings_are_validated():
    config = PruneConfig(ratio=0.5)
    assert (config.distill, config.distill_alpha, config.distill_temperature) == ("auto", 0.5, 4.0)
    with pytest.raises(ValidationError, match="finetune_epochs is 0"):
        PruneConfig(ratio=0.5, finetune_epochs=0, distill="on")
    assert PruneConfig(ratio=0.5, finetune_epochs=0).distill == "auto"  # auto and off need no fine-tune
    for bad in ({"distill_alpha": 0}, {"distill_alpha": 1.5}, {"distill_temperature": 0}, {"distill": "yes"}):
        with pytest.raises(ValidationError):
            PruneConfig(ratio=0.5, **bad)
    with pytest.raises(ValidationError, match="qat is off"):
        QuantizeConfig(qat_distill="on")
    assert QuantizeConfig(qat=True, qat_distill="on", qat_distill_alpha=1.0).qat_distill_alpha == 1.0
    with pytest.raises(ValidationError):
        QuantizeConfig(qat=True, qat_distill_temperature=-1)
