"""edgepipe bench on hand-made tiny runs: structure of results and report.json, bad input, complexity counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import typer
from fakes.onnx_runs import tiny_onnx
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from edgepipe.artifacts import add_artifact, new_manifest, write_json_atomic, write_manifest
from edgepipe.bench.inputs import make_batches, preprocess_raw
from edgepipe.bench.select import pick_deployable
from edgepipe.checkpoint import save_state
from edgepipe.cli.bench import command
from edgepipe.cli.main import user_errors
from edgepipe.complexity import onnx_complexity, torch_complexity
from edgepipe.models import build_model
from edgepipe.recipe import BenchConfig
from edgepipe.report import write_report
from edgepipe.stages.bench import bench

SPEC = {"name": "mlp", "params": {"hidden": [8]}, "input_shape": [1, 4, 4], "num_classes": 10}
PREPROCESSING = {"kind": "image", "layout": "NCHW", "channels": 1, "size": [4, 4], "scale": 1 / 255,
                 "mean": [0.5], "std": [0.25]}
# One CPU runtime unless a test is about several (test_openvino.py): row counts stay one per artifact.
FAST = {"warmup": 1, "warmup_seconds": 0.0, "iters": 3, "seconds": None, "repeats": 2, "memory": False,
        "cpu_runtimes": ["onnxruntime"]}


def _stage(directory: Path, stage: str, files: list[tuple[str, str, str, str]], **extra) -> None:
    manifest = new_manifest(stage, {}, {})
    for filename, name, fmt, precision in files:
        add_artifact(manifest, directory, filename, name=name, fmt=fmt, precision=precision)
    for key, value in extra.items():
        setattr(manifest, key, value)
    write_manifest(directory, manifest)


def make_tiny_run(root: Path, *, accuracies: dict[str, float] | None = None, max_drop: float = 0.5) -> Path:
    """train (mlp on 1x4x4), export (ONNX MatMul), quantize (QDQ int8) and a report.json with eval results."""
    run = root / "run"
    for stage in ("train", "export", "quantize"):
        (run / stage).mkdir(parents=True)
    torch.manual_seed(0)
    save_state({"model": build_model(SPEC).eval().state_dict()}, run / "train" / "model.pt")
    recipe = {"name": "tiny", "target": "jetson-orin-nano", "model": {"name": "mlp"}, "dataset": {"name": "digits"},
              "eval": {"max_drop": max_drop}, "bench": {"deploy_batch": 1}}
    _stage(run / "train", "train", [("model.pt", "original", "torch", "fp32")], model=SPEC,
           dataset={"preprocessing": PREPROCESSING}, recipe=recipe)
    tiny_onnx(run / "export" / "model.onnx")
    _stage(run / "export", "export", [("model.onnx", "onnx-fp32", "onnx", "fp32")], model=SPEC)
    tiny_onnx(run / "quantize" / "model.int8.cpu.onnx", qdq=True)
    _stage(run / "quantize", "quantize", [("model.int8.cpu.onnx", "int8-cpu", "onnx", "int8")])
    accuracies = accuracies or {"original": 0.90, "onnx-fp32": 0.90, "int8-cpu": 0.899}
    artifacts = [{"name": name, "precision": "fp32", "format": "onnx", "path": "", "size_bytes": 1,
                  "score": acc, "drop": round((accuracies["original"] - acc) * 100, 4),
                  "agreement": 1.0} for name, acc in accuracies.items()]
    write_json_atomic(run / "report.json", {"recipe": "tiny", "dataset": {"name": "synthetic", "test_samples": 10},
                                            "task": {"name": "classification", "metric": "accuracy", "unit": "pts"},
                                            "original": {"score": accuracies["original"]},
                                            "max_drop": 0.5, "artifacts": artifacts})
    return run


@pytest.fixture
def tiny_run(tmp_path: Path) -> Path:
    return make_tiny_run(tmp_path)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(user_errors(command))
    return app


def test_bench_run_measures_every_artifact_and_batch(tiny_run: Path) -> None:
    result = bench(tiny_run, BenchConfig(batch_sizes=[1, 4], threads=1, **FAST))
    keys = {(r["name"], r["batch"]) for r in result["rows"]}
    assert keys == {(a, b) for a in ("original", "onnx-fp32", "int8-cpu") for b in (1, 4)}
    for row in result["rows"]:
        latency = row["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
        assert row["iters"] == FAST["iters"] * FAST["repeats"]
        assert len(row["repeat_p50_ms"]) == FAST["repeats"] and row["p50_spread_pct"] >= 0
        assert row["throughput_per_s"] == pytest.approx(row["batch"] / (latency["p50"] / 1000))
        assert row["end_to_end"]["iters"] == row["iters"]  # image preprocessing is recorded, so e2e is timed
        assert row["size_bytes"] > 0 and row["params"] > 0 and row["macs"] > 0
    original = [r for r in result["rows"] if r["name"] == "original"]
    assert all(r["speedup_vs_original"] == pytest.approx(1.0) for r in original)
    assert result["machine"]["threads"] == 1 and result["settings"]["repeats"] == 2
    assert result["deployable"]["cpu"]["name"] in {"original", "onnx-fp32", "int8-cpu"}
    assert "TensorRT" in result["deployable"]["jetson-orin-nano"]["reason"]


def test_bench_writes_no_report_and_the_writer_makes_report_json_md_and_png(tiny_run: Path) -> None:
    before = (tiny_run / "report.json").read_bytes()
    result = bench(tiny_run, BenchConfig(batch_sizes=[1, 2], threads=1, **FAST))
    assert (tiny_run / "report.json").read_bytes() == before and not (tiny_run / "report.md").exists()
    write_report(tiny_run, bench=result)
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["recipe"] == "tiny" and report["original"]["score"] == 0.90  # existing names kept
    assert report["bench"]["rows"]
    by_name = {a["name"]: a for a in report["artifacts"]}
    int8 = by_name["int8-cpu"]
    assert int8["drop"] == pytest.approx(0.1)
    assert set(int8["bench"]) == {"1", "2"}
    for field in ("latency_ms", "throughput_per_s", "peak_memory_bytes", "speedup_vs_original"):
        assert field in int8["bench"]["1"]
    assert set(int8["bench"]["1"]["latency_ms"]) == {"p50", "p90", "p99", "mean"}
    assert int8["params"] == 160 and int8["macs"] == 160  # the 16x10 MatMul of fakes.onnx_runs.tiny_onnx
    markdown = (tiny_run / "report.md").read_text()
    assert "| int8-cpu | onnxruntime | int8 | 1 |" in markdown
    assert "inference_mode" in markdown and "threads" in markdown and "Deployable" in markdown
    png = (tiny_run / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_bench_measures_peak_memory_in_a_fresh_process(tiny_run: Path) -> None:
    result = bench(tiny_run / "export" / "model.onnx", BenchConfig(batch_sizes=[1], threads=1, warmup=0,
                                                                  warmup_seconds=0.0, iters=2, repeats=1,
                                                                  cpu_runtimes=["onnxruntime"]))
    (row,) = result["rows"]
    assert row["peak_memory_bytes"] is not None and row["peak_memory_bytes"] > 0


def test_single_onnx_file_gets_no_report_but_a_result(tiny_run: Path) -> None:
    result = bench(tiny_run / "quantize" / "model.int8.cpu.onnx", BenchConfig(batch_sizes=[2], threads=1, **FAST))
    (row,) = result["rows"]
    assert row["name"] == "int8-cpu" and row["speedup_vs_original"] is None
    assert row["drop"] == pytest.approx(0.1)  # found in the run's report.json


def test_backend_filter_keeps_only_that_backend(tiny_run: Path) -> None:
    result = bench(tiny_run, BenchConfig(batch_sizes=[1], threads=1, backends=["onnxruntime"], **FAST))
    assert {r["backend"] for r in result["rows"]} == {"onnxruntime"}


def test_engine_is_skipped_with_the_reason_when_tensorrt_is_absent(tiny_run: Path) -> None:
    build = tiny_run / "build-fp16"
    build.mkdir()
    (build / "model.fp16.engine").write_bytes(b"not an engine")
    _stage(build, "build", [("model.fp16.engine", "trt-fp16", "engine", "fp16")])
    result = bench(tiny_run, BenchConfig(batch_sizes=[1], threads=1, **FAST))
    (skipped,) = result["skipped"]
    assert skipped["name"] == "trt-fp16" and skipped["reason"]
    assert "trt-fp16" not in {r["name"] for r in result["rows"]}


@pytest.mark.parametrize(("args", "message"), [
    (["--batch", "0,8"], "positive"),
    (["--batch", "1,x"], "comma-separated"),
    (["--iters", "0"], "greater than or equal to 1"),
    (["--seconds", "0"], "greater than or equal to 0.01"),
    (["--seconds", "inf"], "less than or equal to 3600"),
])
def test_bad_settings_are_one_line_exit_2(tiny_run: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(_app(), [str(tiny_run), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_missing_path_is_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), [str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_artifact_whose_input_does_not_match_the_dataset_is_exit_2(tiny_run: Path) -> None:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 192])
    graph = helper.make_graph([helper.make_node("Flatten", ["input"], ["logits"])], "wrong", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              tiny_run / "export" / "wrong.onnx")
    result = CliRunner().invoke(_app(), [str(tiny_run / "export" / "wrong.onnx"), "--iters", "1"])
    assert result.exit_code == 2
    assert "(3, 8, 8)" in result.output and "(1, 4, 4)" in result.output


def test_cli_json_and_table(tiny_run: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(_app(), [str(tiny_run), "--batch", "1", "--iters", "2", "--seconds", "0.01", "--warmup",
                                    "0", "--repeats", "1", "--no-memory", "--json", "--backend", "onnxruntime",
                                    "--steady"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {r["name"] for r in payload["rows"]} == {"onnx-fp32", "int8-cpu"}
    steadiness = payload["steadiness"]  # --steady: a probe before each window: 2 artifacts x (compute, e2e)
    assert steadiness["windows"] == 4 and steadiness["probe_best_ms"] > 0
    table = runner.invoke(_app(), [str(tiny_run), "--batch", "1", "--iters", "2", "--seconds", "0.01", "--repeats", "1",
                                   "--no-memory", "--no-steady"])
    assert table.exit_code == 0 and "int8-cpu" in table.stdout and "p50" in table.stdout


def test_bench_settings_are_checked_by_their_config(tiny_run: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        BenchConfig(batch_sizes=[1], iters=0)
    with pytest.raises(ValidationError, match="positive"):
        BenchConfig(batch_sizes=[-1])
    result = CliRunner().invoke(_app(), [str(tiny_run), "--batch", "1,-2"])  # the CLI: one line, exit 2
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "positive" in result.output


def test_a_settings_file_is_a_bench_section_checked_in_one_line(tiny_run: Path, tmp_path: Path) -> None:
    settings = tmp_path / "bench.yaml"
    settings.write_text("batch_sizes: [1]\niters: 0\n")
    result = CliRunner().invoke(_app(), [str(tiny_run), "--settings", str(settings)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "iters: Input should be greater" in result.output
    settings.write_text("batch_sizes: [1]\niters: 2\nwarmup: 0\nwarmup_seconds: 0\nseconds: 0.01\nrepeats: 1\n"
                        "memory: false\nbackends: [onnxruntime]\ndeploy_batch: 1\n")
    result = CliRunner().invoke(_app(), [str(tiny_run), "--settings", str(settings), "--json"])
    assert result.exit_code == 0, result.output
    assert {r["batch"] for r in json.loads(result.stdout)["rows"]} == {1}
    assert json.loads((tiny_run / "report.json").read_text())["bench"]["settings"]["iters"] == 2  # the writer's


def test_a_library_call_neither_waits_for_the_machine_nor_writes_home(tiny_run: Path, monkeypatch, tmp_path) -> None:
    from edgepipe.bench import steady

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(steady.SteadyGate, "__post_init__", lambda self: pytest.fail("steadiness is opt-in"))
    result = bench(tiny_run, BenchConfig(batch_sizes=[1], threads=1, warmup=0, iters=2, repeats=1, memory=False,
                                         warmup_seconds=0.0))
    assert result["steadiness"] is None and not (tmp_path / "home").exists()


def test_onnx_and_torch_complexity_agree_on_a_conv_net(tmp_path: Path) -> None:
    model = build_model({"name": "resnet", "params": {"width": 8, "blocks": [1, 1]}, "input_shape": [1, 12, 12],
                         "num_classes": 10}).eval()
    counted = torch_complexity(model, (1, 12, 12))
    path = tmp_path / "resnet.onnx"
    torch.onnx.export(model, (torch.zeros(2, 1, 12, 12),), str(path), input_names=["input"],
                      dynamic_axes={"input": {0: "batch"}}, dynamo=False)
    from_graph = onnx_complexity(path)
    assert from_graph["macs"] == counted["macs"] and not from_graph["uncounted"]
    # stem 1->8 3x3 on 12x12, block 8->8 two 3x3, block 8->16 stride 2 (3x3, 3x3, 1x1), classifier 16->10
    expected = 144 * 8 * 9 + 2 * 144 * 8 * 72 + 36 * 16 * 72 + 36 * 16 * 144 + 36 * 16 * 8 + 160
    assert counted["macs"] == expected


def test_onnx_complexity_counts_recurrent_cells(tmp_path: Path) -> None:
    steps, features, hidden = 5, 3, 4
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [steps, "batch", features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    weights = [numpy_helper.from_array(np.zeros((1, 4 * hidden, features), np.float32), "W"),
               numpy_helper.from_array(np.zeros((1, 4 * hidden, hidden), np.float32), "R")]
    node = helper.make_node("LSTM", ["input", "W", "R"], ["y"], hidden_size=hidden)
    graph = helper.make_graph([node], "lstm", [x], [y], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), tmp_path / "lstm.onnx")
    counted = onnx_complexity(tmp_path / "lstm.onnx")
    assert counted["macs"] == steps * 4 * hidden * (features + hidden)
    assert counted["params"] == 4 * hidden * (features + hidden)


def test_end_to_end_input_is_the_preprocessed_raw_batch() -> None:
    model_batch, raw = make_batches(3, (1, 4, 4), PREPROCESSING)
    assert raw.dtype == np.uint8 and raw.shape == (3, 1, 4, 4)
    np.testing.assert_allclose(model_batch, (raw / 255.0 - 0.5) / 0.25, rtol=1e-5)
    np.testing.assert_allclose(preprocess_raw(raw, PREPROCESSING), model_batch)
    no_raw_batch, none = make_batches(2, (7,), {})
    assert none is None and no_raw_batch.shape == (2, 7)


def _row(name: str, backend: str, precision: str, p50: float, drop: float | None, batch: int = 1,
         size: int = 1000) -> dict:
    return {"name": name, "backend": backend, "precision": precision, "batch": batch,
            "latency_ms": {"p50": p50}, "drop": drop, "size_bytes": size}


def test_pick_is_the_fastest_within_budget_not_the_int8_one() -> None:
    rows = [_row("original", "torch", "fp32", 10.0, 0.0), _row("pruned-onnx-fp32", "onnxruntime", "fp32", 1.0, 0.2),
            _row("int8-cpu", "onnxruntime", "int8", 1.5, 0.1), _row("int8-trt-qdq", "onnxruntime", "int8", 0.5, 0.9)]
    pick = pick_deployable(rows, batch=1, max_drop=0.5)["cpu"]
    assert pick["name"] == "pruned-onnx-fp32"
    assert "1.5x faster than int8-cpu" in pick["reason"] and "10.0x faster than the original" in pick["reason"]
    assert "int8-trt-qdq is faster but drops 0.90 pt" in pick["reason"]


def test_a_tie_within_noise_goes_to_the_smaller_file() -> None:
    rows = [_row("original", "torch", "fp32", 10.0, 0.0, size=9000),
            _row("pruned-onnx-fp32", "onnxruntime", "fp32", 1.00, 0.0, size=4000),
            _row("int8-cpu", "onnxruntime", "int8", 1.04, 0.1, size=1000),
            _row("fp16", "onnxruntime", "fp16", 1.20, 0.0, size=2000)]
    pick = pick_deployable(rows, batch=1, max_drop=0.5)["cpu"]
    assert pick["name"] == "int8-cpu"
    assert "smallest file" in pick["reason"] and "pruned-onnx-fp32 (onnxruntime fp32) 1 ms" in pick["reason"]
    rows[2]["latency_ms"]["p50"] = 1.06  # just outside the 5 % tie: speed decides again
    assert pick_deployable(rows, batch=1, max_drop=0.5)["cpu"]["name"] == "pruned-onnx-fp32"


def test_a_difference_within_the_fastest_rows_own_noise_is_a_tie() -> None:
    """What a noisy 2-core VM gave: the fastest row's repeats disagreed by 39 %; an INT8 graph 5.3 % slower than it
    in this run (and 1.6x faster in paired rounds later) must not lose on a difference the run cannot resolve."""
    rows = [_row("original", "torch", "fp32", 2.0, 0.0, size=9000),
            _row("pruned-onnx-fp32", "onnxruntime", "fp32", 0.1017, -0.6, size=232_000),
            _row("fp16", "onnxruntime", "fp16", 0.104, -0.6, size=130_000),
            _row("int8-cpu", "onnxruntime", "int8", 0.1071, -0.3, size=60_000)]
    rows[1]["p50_spread_pct"] = 39.4
    pick = pick_deployable(rows, batch=1, max_drop=0.5)["cpu"]
    assert pick["name"] == "int8-cpu"
    assert "within 39% of the fastest p50" in pick["reason"] and "repeats disagreeing by 39%" in pick["reason"]
    rows[1]["p50_spread_pct"] = 2.0  # a steady run: the 5 % tie again, and int8-cpu is just outside it
    assert pick_deployable(rows, batch=1, max_drop=0.5)["cpu"]["name"] == "fp16"
    rows[1]["p50_spread_pct"] = 400.0  # however noisy, twice as slow is never a tie
    rows[3]["latency_ms"]["p50"] = 0.21
    assert pick_deployable(rows, batch=1, max_drop=0.5)["cpu"]["name"] == "fp16"


def test_pick_uses_the_closest_benched_batch_and_says_so() -> None:
    rows = [_row("original", "torch", "fp32", 10.0, 0.0, batch=64), _row("a", "onnxruntime", "fp32", 2.0, 0.1, 64)]
    pick = pick_deployable(rows, batch=8, max_drop=0.5)["cpu"]
    assert pick["name"] == "a" and pick["batch"] == 64 and "not benched" in pick["reason"]


def test_a_ratio_from_timings_that_cannot_carry_it_is_called_unreliable() -> None:
    """Repeats 30 % apart, or an end-to-end p50 below the compute p50 (the machine changed speed between windows):
    the ratio is printed as unreliable, with the reason, not as fact."""
    from edgepipe.bench.select import ratio_doubt

    original, fast = _row("original", "torch", "fp32", 10.0, 0.0), _row("int8-cpu", "onnxruntime", "int8", 1.0, 0.1)
    original["p50_spread_pct"], fast["p50_spread_pct"] = 2.0, 3.0
    assert ratio_doubt(fast, original) is None
    assert "unreliable" not in pick_deployable([original, fast], batch=1, max_drop=0.5)["cpu"]["reason"]
    original["p50_spread_pct"] = 30.0
    reason = pick_deployable([original, fast], batch=1, max_drop=0.5)["cpu"]["reason"]
    assert "10.0x faster than original (torch fp32) (unreliable: original (torch) repeats disagree by 30 %)" in reason
    fast["p50_spread_pct"] = 19.0  # both over the limit: the reason names the worse one
    assert ratio_doubt(fast, original) == "original (torch) repeats disagree by 30 %"
    fast["p50_spread_pct"], original["p50_spread_pct"] = 3.0, 2.0
    fast["end_to_end"] = {"latency_ms": {"p50": 0.5}}
    assert "end to end (0.5 ms) timed below its compute alone (1 ms)" in ratio_doubt(fast, original)
    fast["end_to_end"] = {"latency_ms": {"p50": 0.99}}  # within the slack: end to end is never faster, but close
    assert ratio_doubt(fast, original) is None


def test_pick_reports_when_nothing_is_within_budget() -> None:
    rows = [_row("original", "torch", "fp32", 10.0, 1.0), _row("a", "onnxruntime", "int8", 2.0, 3.0)]
    pick = pick_deployable(rows, batch=1, max_drop=0.5)["cpu"]
    assert pick["name"] is None and "no artifact within" in pick["reason"]


def test_finish_report_benches_when_the_recipe_asks_and_writes_md_either_way(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from edgepipe.recipe import EvalConfig
    from edgepipe.stages.pipeline import finish_report

    run = make_tiny_run(tmp_path, max_drop=0.05)  # the run's budget: what bench's pick keeps within
    report = finish_report(run, SimpleNamespace(bench=None, eval=EvalConfig()))
    assert "bench" not in report and (run / "report.md").is_file() and not (run / "report.png").exists()
    config = BenchConfig(batch_sizes=[1], warmup=0, iters=2, threads=1)
    report = finish_report(run, SimpleNamespace(bench=config, eval=EvalConfig()))
    assert report["bench"]["max_drop"] == 0.05
    assert report["bench"]["deployable"]["cpu"]["name"] in {"original", "onnx-fp32"}  # int8 drops 0.1 > 0.05
    assert (run / "report.png").is_file() and "Deployable" in (run / "report.md").read_text()
