"""TrtRunner call sequences (named-tensor API and 8.x bindings API), portability guard, bad engine files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: home of the fakes package

from fakes.onnx_runs import make_run  # noqa: E402
from fakes.tensorrt_fake import NUM_CLASSES, install  # noqa: E402

from edgepipe.errors import EdgepipeError  # noqa: E402
from edgepipe.recipe import BuildConfig
from edgepipe.runners.tensorrt import TrtRunner  # noqa: E402
from edgepipe.stages.build import build  # noqa: E402


def user_errors(function):
    """What edgepipe.cli.main.user_errors does (main imports every command module, some not written yet)."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except EdgepipeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _expected(batch: np.ndarray) -> np.ndarray:
    return batch.reshape(len(batch), -1).sum(1, keepdims=True) * np.arange(
        1, NUM_CLASSES + 1, dtype=np.float32
    )


def _engine(tmp_path, monkeypatch, version="10.3.0", **options):
    trt = install(monkeypatch, version, **options)
    stage = build(make_run(tmp_path), None, BuildConfig(precision="fp16", batch=(1, 4, 8)))
    trt.calls.clear()
    return trt, stage / "model.fp16.engine"


def test_named_tensor_api_sequence_and_outputs(tmp_path, monkeypatch):
    trt, engine = _engine(tmp_path, monkeypatch, "10.3.0")
    batch = np.random.default_rng(0).normal(size=(3, 1, 4, 4)).astype(np.float32)
    with TrtRunner(engine) as runner:
        assert runner.input_spec.name == "input" and runner.input_spec.shape == (None, 1, 4, 4)
        open_calls = trt.recorder.names()
        open_records = list(trt.calls)
        trt.calls.clear()
        out = runner.infer(batch)["logits"]
        assert runner.last_timing.gpu_compute_ms == 0.25 and runner.last_timing.host_to_host_ms > 0
    np.testing.assert_allclose(out, _expected(batch), rtol=1e-5)
    trt_open = [n for n in open_calls if not n.startswith("cudart.")]
    assert trt_open == [
        "Runtime",
        "Runtime.deserialize_cuda_engine",
        "ICudaEngine.create_execution_context",
        "IExecutionContext.set_input_shape",  # to the profile max, to size the output buffer
        "IExecutionContext.set_tensor_address",
        "IExecutionContext.set_tensor_address",  # bound once
    ]
    # Buffers for the profile max (8 x 1x4x4 float in, 8 x 10 float out), device and page-locked host, once.
    assert [c for c in open_records if c[0] in ("cudart.cudaMalloc", "cudart.cudaMallocHost")] == [
        ("cudart.cudaMalloc", (8 * 16 * 4,)), ("cudart.cudaMallocHost", (8 * 16 * 4,)),
        ("cudart.cudaMalloc", (8 * 10 * 4,)), ("cudart.cudaMallocHost", (8 * 10 * 4,))]
    stream = dict(open_records)["cudart.cudaStreamCreate"][0]
    assert trt.recorder.names() == [
        "IExecutionContext.set_input_shape",
        "cudart.cudaMemcpyAsync:H2D",
        "cudart.cudaEventRecord",
        "IExecutionContext.execute_async_v3",
        "cudart.cudaEventRecord",
        "cudart.cudaMemcpyAsync:D2H",
        "cudart.cudaStreamSynchronize",
        "cudart.cudaFree", "cudart.cudaFree", "cudart.cudaFreeHost", "cudart.cudaFreeHost",  # close() frees all
        "cudart.cudaStreamDestroy",
    ]
    # One stream carries the copies, the events and the execution: nothing runs on the default stream.
    assert ("cudart.cudaMemcpyAsync:H2D", (3 * 16 * 4, stream)) in trt.calls
    assert ("cudart.cudaMemcpyAsync:D2H", (3 * 10 * 4, stream)) in trt.calls
    assert ("IExecutionContext.execute_async_v3", (stream,)) in trt.calls
    assert trt.cudart.allocated == 0 and not trt.cudart.host  # nothing leaks


def test_bindings_api_on_tensorrt_8_2(tmp_path, monkeypatch):
    trt, engine = _engine(tmp_path, monkeypatch, "8.2.1", cc=(8, 7))
    batch = np.ones((2, 1, 4, 4), np.float32)
    with TrtRunner(engine) as runner:
        created = dict(trt.calls)["cudart.cudaStreamCreate"][0]
        trt.calls.clear()
        out = runner.infer(batch)["logits"]
    np.testing.assert_allclose(out, _expected(batch))
    names = trt.recorder.names()
    assert "IExecutionContext.execute_async_v2" in names and "IExecutionContext.execute_async_v3" not in names
    bindings, stream = dict(trt.calls)["IExecutionContext.execute_async_v2"]
    assert len(bindings) == 2 and stream == created
    assert ("IExecutionContext.set_binding_shape", (0, (2, 1, 4, 4))) in trt.calls


def test_batches_above_the_profile_max_are_split(tmp_path, monkeypatch):
    trt, engine = _engine(tmp_path, monkeypatch)
    batch = np.arange(20 * 16, dtype=np.float32).reshape(20, 1, 4, 4)
    with TrtRunner(engine) as runner:
        trt.calls.clear()
        out = runner.infer(batch)["logits"]
    np.testing.assert_allclose(out, _expected(batch), rtol=1e-5)
    assert trt.recorder.names().count("IExecutionContext.execute_async_v3") == 3  # 8 + 8 + 4


def _rewrite_machine(engine: Path, **machine) -> None:
    path = engine.parent / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["config"]["machine"].update(machine)
    path.write_text(json.dumps(manifest))


def test_engine_from_another_tensorrt_is_refused_with_the_rebuild_command(tmp_path, monkeypatch):
    _, engine = _engine(tmp_path, monkeypatch)
    _rewrite_machine(engine, tensorrt_version="8.6.2")
    with pytest.raises(EdgepipeError) as info:
        TrtRunner(engine).__enter__()
    text = str(info.value)
    assert "TensorRT 8.6.2 (this machine: 10.3.0)" in text
    assert f"edgepipe build {tmp_path / 'run'} --precision fp16" in text and text.endswith("--rebuild")
    assert "--batch 1:4:8" in text


def test_engine_for_another_gpu_is_refused(tmp_path, monkeypatch):
    _, engine = _engine(tmp_path, monkeypatch)
    _rewrite_machine(engine, compute_capability=[7, 2], gpu_name="Xavier")
    with pytest.raises(EdgepipeError, match=r"Xavier sm_72 \(this machine: NVIDIA Orin sm_87\)"):
        TrtRunner(engine).__enter__()


def test_truncated_engine_is_one_line(tmp_path, monkeypatch):
    _, engine = _engine(tmp_path, monkeypatch)
    engine.write_bytes(engine.read_bytes()[:20])
    with pytest.raises(EdgepipeError) as info:
        TrtRunner(engine).__enter__()
    assert "does not load (20 bytes" in str(info.value) and "\n" not in str(info.value)


def test_truncated_engine_via_cli_exits_2(tmp_path, monkeypatch):
    # The runner behind a CLI command: user errors become one line and exit code 2 (cli/main.user_errors).
    _, engine = _engine(tmp_path, monkeypatch)
    engine.write_bytes(b"FAKEENGINE:{trunc")
    app = typer.Typer()

    @app.command()
    def run(path: Path) -> None:
        with TrtRunner(path) as runner:
            runner.infer(np.zeros((1, 1, 4, 4), np.float32))

    app.command("noop")(lambda: None)
    user_errors_run = user_errors(run)
    app.registered_commands[0].callback = user_errors_run
    result = CliRunner().invoke(app, ["run", str(engine)])
    assert result.exit_code == 2
    assert "does not load" in result.output and len(result.output.strip().splitlines()) == 1


def test_build_cli_command_without_tensorrt_exits_2(tmp_path):
    from edgepipe.cli.build import command

    app = typer.Typer()
    app.command("build")(user_errors(command))
    app.command("noop")(lambda: None)
    run = make_run(tmp_path)
    result = CliRunner().invoke(app, ["build", str(run), "--precision", "fp16"])
    assert result.exit_code == 2
    assert "model.int8.cpu.onnx" in result.output


def test_build_cli_prints_what_it_built(tmp_path, monkeypatch):
    from edgepipe.cli.build import command

    install(monkeypatch, "10.3.0")
    app = typer.Typer()
    app.command("build")(user_errors(command))
    app.command("noop")(lambda: None)
    run = make_run(tmp_path)
    result = CliRunner().invoke(
        app, ["build", str(run), "--precision", "best", "--target", "jetson-orin-nano"]
    )
    assert result.exit_code == 0, result.output
    assert "resolved to int8" in result.output
    assert f"wrote {run / 'build-int8' / 'model.int8.engine'}" in result.output
    bad = CliRunner().invoke(app, ["build", str(run), "--batch", "8:4:1"])
    assert bad.exit_code == 2 and "MIN:OPT:MAX" in bad.output


def test_a_static_profile_is_a_fixed_batch_and_a_short_tail_is_padded(tmp_path, monkeypatch):
    from edgepipe.recipe import BuildConfig
    from edgepipe.runners.base import infer_in_batches

    install(monkeypatch, "10.3.0")
    static = build(make_run(tmp_path / "a"), None, BuildConfig(precision="fp16", batch=(4, 4, 4)))
    batch = np.arange(6 * 16, dtype=np.float32).reshape(6, 1, 4, 4)
    with TrtRunner(static / "model.fp16.engine") as runner:
        assert runner.input_spec.shape == (4, 1, 4, 4)  # DLA-style min == max: callers must fill the batch
        np.testing.assert_allclose(infer_in_batches(runner, batch), _expected(batch), rtol=1e-5)
    ranged = build(make_run(tmp_path / "b"), None, BuildConfig(precision="fp16", batch=(2, 4, 8)))
    with TrtRunner(ranged / "model.fp16.engine") as runner:
        assert runner.input_spec.shape[0] is None
        out = runner.infer(batch[:1])["logits"]  # one sample under the profile's minimum of 2
    np.testing.assert_allclose(out, _expected(batch[:1]), rtol=1e-5)
