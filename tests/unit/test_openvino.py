"""OpenVINO beside onnxruntime: the same ONNX files, the same outputs, timed side by side by bench."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgepipe.errors import EdgepipeError
from edgepipe.recipe import BenchConfig
from edgepipe.runners.select import installed_cpu_runtimes, runner_for_file

pytest.importorskip("openvino", reason="the openvino extra (make install brings it)")


@pytest.fixture
def run(tmp_path: Path) -> Path:
    from test_bench import make_tiny_run

    return make_tiny_run(tmp_path)


def test_openvino_is_installed_by_make_install():
    assert installed_cpu_runtimes() == ["onnxruntime", "openvino"]


def test_an_fp32_artifact_runs_in_f32_even_where_openvino_would_pick_bf16(run):
    """On AMX / AVX512-BF16 CPUs OpenVINO's default inference precision is bf16: not what the artifact was
    checked in. The runner asks for f32, and the compiled model says so."""
    with runner_for_file(run / "export/model.onnx", threads=1, runtime="openvino") as ov:
        assert ov._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"


@pytest.mark.parametrize("name", ["export/model.onnx", "quantize/model.int8.cpu.onnx"])
def test_same_file_same_outputs_as_onnxruntime(run, name):
    x = np.random.default_rng(0).normal(size=(5, 1, 4, 4)).astype(np.float32)
    with runner_for_file(run / name, threads=1) as ort, runner_for_file(run / name, threads=1,
                                                                          runtime="openvino") as ov:
        assert ov.backend == "openvino" and "OpenVINO" in ov.device
        assert [s.name for s in ov.outputs] == [s.name for s in ort.outputs]
        assert ov.input_spec.shape == ort.input_spec.shape == (None, 1, 4, 4)
        expected, got = ort.infer(x), ov.infer(x)
    for key in expected:
        scale = float(np.abs(expected[key]).max()) or 1.0
        assert float(np.abs(expected[key] - got[key]).max()) <= 0.05 * scale  # int8 kernels round differently


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_throughput_streams_split_the_batch_and_put_it_back_in_order(run, batch):
    """THROUGHPUT: one request per stream, each on a slice of the batch, run concurrently: the same outputs, in
    the same order, as the one-request latency configuration."""
    from edgepipe.runners.openvino import OvRunner

    x = np.random.default_rng(batch).normal(size=(batch, 1, 4, 4)).astype(np.float32)
    with OvRunner(run / "export" / "model.onnx", threads=2, hint="THROUGHPUT") as streams, \
            OvRunner(run / "export" / "model.onnx", threads=2) as latency:
        if len(streams._requests) < 2:
            pytest.skip("OpenVINO chose one stream on this machine: nothing to split")
        assert "streams" in streams.device
        got, expected = streams.infer(x), latency.infer(x)
        again = streams.infer(x[: max(1, batch // 2)])  # a smaller batch after a larger one
    for name in expected:
        assert got[name].shape == expected[name].shape
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(again[name], expected[name][: max(1, batch // 2)], rtol=1e-5, atol=1e-6)


def test_bad_input(run, tmp_path):
    from edgepipe.runners.openvino import OvRunner

    with pytest.raises(EdgepipeError, match="performance hint"):
        OvRunner(run / "export" / "model.onnx", hint="FAST")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(EdgepipeError, match="OpenVINO cannot compile it"), OvRunner(tmp_path / "bad.onnx"):
        pass
    with pytest.raises(EdgepipeError, match="unknown CPU runtime"):
        runner_for_file(run / "export" / "model.onnx", runtime="tvm")


def test_bench_times_every_onnx_artifact_on_both_runtimes_and_the_pick_names_the_pair(run):
    from edgepipe.stages.bench import bench

    config = BenchConfig(batch_sizes=[1], threads=1, warmup=1, warmup_seconds=0.0, iters=3, seconds=None,
                         repeats=2, memory=False)
    result = bench(run, config)
    pairs = {(r["name"], r["backend"]) for r in result["rows"]}
    assert {("onnx-fp32", "onnxruntime"), ("onnx-fp32", "openvino"), ("int8-cpu", "onnxruntime"),
            ("int8-cpu", "openvino"), ("original", "torch")} <= pairs
    assert result["settings"]["cpu_runtimes"] == ["onnxruntime", "openvino"]
    pick = result["deployable"]["cpu"]
    assert pick["backend"] in {"torch", "onnxruntime", "openvino"}
    assert f"({pick['backend']} " in pick["reason"]  # the reason names the runtime with the artifact
    assert all(r["setting"] == {"threads": 1, **({"hint": "LATENCY"} if r["backend"] == "openvino" else {})}
               and "setting_probe" not in r for r in result["rows"])  # one thread: nothing else to try
    only = bench(run, config.model_copy(update={"cpu_runtimes": ["openvino"]}))
    assert {r["backend"] for r in only["rows"]} == {"torch", "openvino"}
    json.dumps(result)  # JSON-ready


def test_infer_runs_the_pair_bench_picked_and_says_so(run):
    from edgepipe.infer import choose

    report = json.loads((run / "report.json").read_text())
    report["bench"] = {"deployable": {"cpu": {"artifact": "int8-cpu", "backend": "openvino", "target": "cpu"}}}
    (run / "report.json").write_text(json.dumps(report))
    choice = choose(run)
    assert choice.artifact == "int8-cpu" and choice.runner.backend == "openvino"
    assert "bench's pick for this CPU" in choice.note
    assert choose(run, artifact="onnx-fp32").runner.backend == "onnxruntime"  # asked for: no pick applies
    report["bench"]["deployable"]["cpu"]["backend"] = "onnxruntime"
    (run / "report.json").write_text(json.dumps(report))
    assert choose(run).runner.backend == "onnxruntime"


def test_bench_probes_settings_per_batch_and_the_rows_say_which_ran(run):
    from edgepipe.stages.bench import bench

    config = BenchConfig(batch_sizes=[1, 8], threads=2, warmup=1, warmup_seconds=0.0, iters=5, seconds=None,
                         repeats=1, memory=False, end_to_end=False)
    result = bench(run, config)
    for row in result["rows"]:
        if row["backend"] == "torch":
            assert row["setting"] == {"threads": 2} and "setting_probe" not in row
            continue
        probed = row["setting_probe"]
        tried = {"onnxruntime": {"2 threads", "1 thread"},
                 "openvino": {"2 threads", "1 thread"} | ({"2 threads, throughput streams"} if row["batch"] > 1
                                                          else set())}[row["backend"]]
        assert set(probed["p50_ms"]) == tried and probed["chosen"] == row["setting_label"]
        assert row["setting_tuned"] == (row["setting_label"] != "2 threads")
        if row["backend"] == "openvino":
            assert ("throughput" in row["device"]) == (row["setting"].get("hint") == "THROUGHPUT")
    pick = result["deployable"]["cpu"]
    picked = next(r for r in result["rows"] if (r["name"], r["backend"], r["batch"]) ==
                  (pick["name"], pick["backend"], pick["batch"]))
    assert pick.get("setting") == picked["setting"]
    assert ("thread" in pick["reason"]) == bool(picked.get("setting_tuned"))
    json.dumps(result)


def test_infer_runs_the_setting_bench_measured_near_its_batch_unless_the_user_names_threads(run):
    from edgepipe.infer import choose
    from edgepipe.timing import available_cpus

    report = json.loads((run / "report.json").read_text())
    pick = {"artifact": "int8-cpu", "backend": "openvino", "target": "cpu", "batch": 1,
            "setting": {"threads": 1, "hint": "LATENCY"}}
    rows = [{"artifact": "int8-cpu", "backend": "openvino", "batch": 1, "setting": {"threads": 1, "hint": "LATENCY"},
             "setting_label": "1 thread", "setting_tuned": True},
            {"artifact": "int8-cpu", "backend": "openvino", "batch": 64, "setting_tuned": True,
             "setting": {"threads": 100000, "hint": "THROUGHPUT"}, "setting_label": "100000 threads, throughput"},
            {"artifact": "int8-cpu", "backend": "onnxruntime", "batch": 64, "setting": {"threads": 1},
             "setting_tuned": True}]
    report["bench"] = {"deployable": {"cpu": pick}, "rows": rows}
    (run / "report.json").write_text(json.dumps(report))
    one = choose(run, batch=1)
    assert (one.runner.hint, one.runner.threads) == ("LATENCY", 1) and "1 thread" in one.note
    big = choose(run, batch=50)  # closest benched batch: 64; its thread count is capped at this machine's CPUs
    assert (big.runner.hint, big.runner.threads) == ("THROUGHPUT", available_cpus())
    asked = choose(run, batch=50, threads=1)  # the user's --threads: bench's setting does not apply at all
    assert (asked.runner.hint, asked.runner.threads) == ("LATENCY", 1)
    rows[0]["setting_tuned"] = False  # the full budget won at batch 1: infer uses every thread, as before
    rows[1]["setting"] = {"threads": True, "hint": "os:system"}  # data, not a setting: ignored
    (run / "report.json").write_text(json.dumps(report))
    for batch in (1, 64):
        choice = choose(run, batch=batch)
        assert (choice.runner.hint, choice.runner.threads) == ("LATENCY", None)


def test_streams_are_not_used_where_the_batch_is_not_axis_0_of_every_tensor(tmp_path):
    """A scalar output (or NonMaxSuppression-style indices) cannot be put back together by concatenation: such a
    model runs as one request, and a multi-output model with int32 outputs splits correctly."""
    import onnx
    from onnx import TensorProto, helper

    from edgepipe.runners.openvino import OvRunner

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    nodes = [helper.make_node("Mul", ["x", "two"], ["scaled"]),
             helper.make_node("ArgMax", ["x"], ["arg"], axis=1, keepdims=0),
             helper.make_node("Cast", ["arg"], ["classes"], to=TensorProto.INT32)]
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    outputs = [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["n", 3]),
               helper.make_tensor_value_info("classes", TensorProto.INT32, ["n"])]
    split = helper.make_model(helper.make_graph(nodes, "split", [x], outputs, [two]),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(split, tmp_path / "split.onnx")
    nodes.append(helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0))
    whole = helper.make_model(helper.make_graph(nodes, "whole", [x], [*outputs, helper.make_tensor_value_info(
        "total", TensorProto.FLOAT, [])], [two]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(whole, tmp_path / "whole.onnx")
    data = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    with OvRunner(tmp_path / "split.onnx", threads=2, hint="THROUGHPUT") as ov:
        assert ov._splittable
        got = ov.infer(data)
    np.testing.assert_allclose(got["scaled"], 2 * data, rtol=1e-6)
    assert got["classes"].dtype == np.int32 and np.array_equal(got["classes"], data.argmax(1))
    with OvRunner(tmp_path / "whole.onnx", threads=2, hint="THROUGHPUT") as ov:
        assert not ov._splittable
        got = ov.infer(data)
    assert np.isclose(float(got["total"]), float(data.sum()), rtol=1e-5) and got["scaled"].shape == (7, 3)


def test_without_openvino_bench_says_so_once_and_infer_says_what_ran(run, monkeypatch):
    from edgepipe.infer import choose
    from edgepipe.runners import select
    from edgepipe.stages.bench import bench

    monkeypatch.setattr(select, "installed_cpu_runtimes", lambda: ["onnxruntime"])
    config = BenchConfig(batch_sizes=[1], threads=1, warmup=1, warmup_seconds=0.0, iters=3, seconds=None,
                         repeats=1, memory=False, end_to_end=False)
    result = bench(run, config)
    assert {r["backend"] for r in result["rows"]} == {"torch", "onnxruntime"}
    assert sum("OpenVINO is not installed" in note for note in result["notes"]) == 1
    with pytest.raises(EdgepipeError, match="openvino is not installed here"):
        bench(run, config.model_copy(update={"cpu_runtimes": ["openvino"]}))
    with pytest.raises(EdgepipeError, match="openvino is not installed here"):
        bench(run, config.model_copy(update={"backends": ["openvino"]}))

    report = json.loads((run / "report.json").read_text())
    report["bench"] = {"deployable": {"cpu": {"artifact": "int8-cpu", "backend": "openvino", "target": "cpu"}}}
    (run / "report.json").write_text(json.dumps(report))
    choice = choose(run)
    assert choice.runner.backend == "onnxruntime"
    assert "bench picked int8-cpu on openvino, which is not installed here; ran it on onnxruntime" in choice.note
