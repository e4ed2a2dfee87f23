import shutil

import numpy as np
import onnx
import pytest

from edgepipe.artifacts import read_manifest
from edgepipe.errors import EdgepipeError
from edgepipe.recipe import ExportConfig
from edgepipe.rundir import LOCK
from edgepipe.runners.base import infer_in_batches
from edgepipe.runners.onnxruntime import OrtRunner
from edgepipe.runners.torch import TorchRunner
from edgepipe.stages.export import export
from edgepipe.tasks import task_named


def test_export_records_parity_and_dynamic_batch(tiny_run):
    manifest = read_manifest(tiny_run / "export")
    parity = manifest.metrics["parity"]
    assert parity["agreement"] == 1.0 and parity["max_abs_diff"] < 1e-4 and parity["samples"] > 0
    model = onnx.load(tiny_run / "export" / "model.onnx")
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_ort_and_torch_runners_agree_at_any_batch(tiny_run, batch):
    x = np.random.default_rng(0).normal(size=(batch, 1, 12, 12)).astype(np.float32)
    with TorchRunner(tiny_run / "train") as reference, OrtRunner(tiny_run / "export" / "model.onnx") as candidate:
        assert candidate.input_spec.shape == (None, 1, 12, 12)
        assert [o.name for o in reference.outputs] == [o.name for o in candidate.outputs] == ["logits"]
        np.testing.assert_allclose(reference.infer(x)["logits"], candidate.infer({"input": x})["logits"], atol=1e-4)


def test_torch_runner_gives_the_process_its_thread_count_back(tiny_run):
    """torch's thread pool is process-wide: a runner timed at one thread must not leave later training on one."""
    import torch

    before = torch.get_num_threads()
    with TorchRunner(tiny_run / "train", threads=1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_wrong_input_shape_is_a_user_error(tiny_run):
    with OrtRunner(tiny_run / "export" / "model.onnx") as runner:
        with pytest.raises(EdgepipeError, match=r"input shape \(2, 1, 28, 28\) does not match.*\(N, 1, 12, 12\)"):
            runner.infer(np.zeros((2, 1, 28, 28), np.float32))


def test_static_batch_export_pads_the_tail(tiny_run, tmp_path):
    out = export(tiny_run / "train", tmp_path / "static", ExportConfig(dynamic_batch=False, exporter="torchscript"))
    x = np.random.default_rng(1).normal(size=(7, 1, 12, 12)).astype(np.float32)
    with OrtRunner(out / "model.onnx") as runner, TorchRunner(tiny_run / "train") as reference:
        assert runner.input_spec.shape[0] == 2  # exported with a 2-sample example
        np.testing.assert_allclose(infer_in_batches(runner, x), reference.infer(x)["logits"], atol=1e-4)


def test_dynamo_exporter_also_passes_parity(tiny_run, tmp_path):
    out = export(tiny_run / "train", tmp_path / "dynamo", ExportConfig(exporter="dynamo"))
    assert read_manifest(out).metrics["parity"]["agreement"] == 1.0


@pytest.mark.parametrize("content", [b"", b"definitely not a protobuf \x00\x01", b"\x08\x07" * 50])
def test_file_that_is_not_onnx_is_one_line(tmp_path, content):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(EdgepipeError, match="cannot load it as ONNX") as info, OrtRunner(path):
        pass
    assert "\n" not in str(info.value)


def test_broken_parity_fails_and_writes_nothing(tiny_run, tmp_path, monkeypatch):
    import edgepipe.stages.export as export_stage

    def corrupt(reference, candidate, task):
        return {"max_abs_diff": 3.0, "reference_max_abs": 1.0, "agreement": 0.5, "samples": len(reference)}

    monkeypatch.setattr(export_stage, "parity", corrupt)
    with pytest.raises(EdgepipeError, match="ONNX parity broken"):
        export(tiny_run / "train", tmp_path / "export", ExportConfig(exporter="torchscript"))
    assert not (tmp_path / "export").exists()
    assert [p.name for p in tmp_path.iterdir()] == [LOCK]  # the run's lock file stays; no staging leftovers


def test_missing_provider_names_available_ones(tiny_run):
    expected = r"requested provider CUDAExecutionProvider; available: .*CPUExecutionProvider"
    with pytest.raises(EdgepipeError, match=expected):
        with OrtRunner(tiny_run / "export" / "model.onnx", providers=["CUDAExecutionProvider"]):
            pass


def test_export_refuses_a_changed_dataset(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    manifest = read_manifest(run / "train")
    manifest.dataset.fingerprint = "0" * 64
    from edgepipe.artifacts import write_manifest

    write_manifest(run / "train", manifest)
    with pytest.raises(EdgepipeError, match="changed since the model was trained"):
        export(run / "train", run / "export2", ExportConfig(exporter="torchscript"))


def test_parity_scales_with_the_outputs():
    from edgepipe.onnx_export import parity

    reference = np.random.default_rng(0).normal(scale=30.0, size=(100, 10))
    task = task_named("classification")
    check = parity(reference, reference + 8.4e-3, task)  # a deep net's logits at ~1e-4 relative error
    assert check["max_abs_diff"] == pytest.approx(8.4e-3) and check["max_rel_diff"] < 1e-3
    assert check["cosine"] > 0.999999 and check["agreement"] == 1.0
    assert parity(np.zeros((4, 3)), np.zeros((4, 3)), task)["max_rel_diff"] == 0.0


def test_a_dead_model_is_refused_and_a_chance_one_flagged():
    from edgepipe.stages.export import check_not_degenerate

    task, classes = task_named("classification"), ["a", "b", "c", "d"]
    with pytest.raises(EdgepipeError, match="outputs are the same for all 50 test samples"):
        check_not_degenerate(np.zeros((50, 4), np.float32), np.arange(50) % 4, classes, task)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 1000)
    guessing = rng.normal(size=(1000, 4))
    assert "at chance for 4 classes" in check_not_degenerate(guessing, labels, classes, task)
    learned = np.eye(4)[labels] * 5 + rng.normal(size=(1000, 4))
    assert check_not_degenerate(learned, labels, classes, task) is None
