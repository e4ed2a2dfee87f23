"""report.py: report.json merging, the eval table, report.md and report.png without/with bench results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from edgepipe.report import eval_table, update_report, write_report_markdown, write_report_plot, write_task_plot

EVAL = {
    "recipe": "tiny", "dataset": {"name": "mnist5k", "test_samples": 1000}, "max_drop": 0.5,
    "task": {"name": "classification", "metric": "accuracy", "unit": "pts"},
    "original": {"score": 0.98},
    "artifacts": [
        {"name": "original", "backend": "torch", "precision": "fp32", "score": 0.98, "drop": 0.0,
         "within_budget": True, "agreement": 1.0, "metrics": {"accuracy": 0.98, "auc": 0.99}, "size_bytes": 2048},
        {"name": "trt-fp16", "backend": "tensorrt", "precision": "fp16", "skipped": "no TensorRT", "size_bytes": 10},
    ],
}


def test_update_report_merges_sections(tmp_path: Path) -> None:
    update_report(tmp_path, {"recipe": "tiny"})
    merged = update_report(tmp_path, {"bench": {"rows": []}})
    assert merged == {"recipe": "tiny", "bench": {"rows": []}}


def test_a_report_written_before_one_key_named_an_artifact_reads_with_name(tmp_path: Path) -> None:
    import json

    from edgepipe.report import read_report

    old = {"artifacts": [{"name": "int8-cpu"}],
           "bench": {"rows": [{"artifact": "int8-cpu", "batch": 1}], "skipped": [{"artifact": "trt", "reason": "x"}],
                     "deployable": {"cpu": {"artifact": "int8-cpu", "backend": "onnxruntime"}}}}
    (tmp_path / "report.json").write_text(json.dumps(old))
    bench = read_report(tmp_path)["bench"]
    assert bench["rows"][0]["name"] == bench["deployable"]["cpu"]["name"] == "int8-cpu"
    assert bench["skipped"][0]["name"] == "trt"
    assert "artifact" not in bench["rows"][0]


def test_bench_results_of_a_rebuilt_file_are_dropped_when_eval_writes_again(tmp_path: Path) -> None:
    from edgepipe.artifacts import sha256_file

    model = tmp_path / "model.onnx"
    model.write_bytes(b"first build")
    row = {"name": "onnx-fp32", "path": str(model), "sha256": sha256_file(model), "batch": 1}
    update_report(tmp_path, {"bench": {"rows": [row]}})
    assert "bench" in update_report(tmp_path, {"artifacts": []})  # same file: the timings still hold
    model.write_bytes(b"rebuilt by a later stage")
    assert "bench" not in update_report(tmp_path, {"artifacts": []})


def test_eval_table_still_renders_skipped_rows() -> None:
    console = Console(record=True, width=160)
    console.print(eval_table(EVAL))
    text = console.export_text()
    assert "trt-fp16" in text and "skipped" in text and "98.00%" in text


def test_markdown_without_bench_has_the_score_table_and_recipe(tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text("name: tiny\n")
    path = write_report_markdown(tmp_path, EVAL)
    text = path.read_text()
    assert "## top-1" in text and "| original | torch | fp32 | 98.00% | +0.00 |" in text
    assert "```yaml\nname: tiny\n```" in text and "Performance" not in text


def test_plot_needs_bench_rows_with_accuracy(tmp_path: Path) -> None:
    assert write_report_plot(tmp_path, EVAL) is None
    assert not (tmp_path / "report.png").exists()


def test_a_classifier_gets_its_confusion_matrix_and_roc_picture(tiny_run, tmp_path: Path) -> None:
    import shutil

    from edgepipe.report import write_task_plot
    from edgepipe.stages.evaluate import evaluate

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    report = evaluate(run)
    roc = report["artifacts"][0]["metrics"]["roc"]
    assert roc["fpr"][0] == 0.0 and roc["fpr"][-1] == 1.0 and roc["tpr"][-1] == 1.0
    assert (np.diff(roc["tpr"]) >= 0).all()  # a ROC curve never falls
    path = write_task_plot(run, report)
    assert path == run / "report-task.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert write_task_plot(run, {**report, "task": {"name": "reconstruction"}}) is None


def test_the_plot_rings_only_the_picked_runtime_and_names_runtimes_when_a_file_runs_on_two(tmp_path, monkeypatch):
    """The same int8 file on onnxruntime and on OpenVINO is two points: labels say which is which, and only the
    (artifact, runtime) pair bench picked gets the deployment ring."""
    from edgepipe.report import plot

    def row(artifact, backend, batch, p50, precision="int8"):
        return {"name": artifact, "backend": backend, "batch": batch, "precision": precision, "score": 0.98,
                "size_bytes": 1000, "latency_ms": {"p50": p50}, "speedup_vs_original": 1.0 / p50}

    rows = [row("original", "torch", n, 1.0, "fp32") for n in (1, 64)]
    rows += [row("int8-cpu", backend, n, p50) for n in (1, 64) for backend, p50 in (("onnxruntime", 0.1),
                                                                                   ("openvino", 0.08))]
    report = {**EVAL, "bench": {"rows": rows, "machine": {"cpu": "x", "threads": 2},
                                "deployable": {"cpu": {"name": "int8-cpu", "backend": "openvino"}}}}
    panels = []
    monkeypatch.setattr(plot, "_place_labels", lambda figure, axis, points: panels.append(points))
    assert write_report_plot(tmp_path, report) is not None
    assert len(panels) == 2
    for points in panels:
        picked = [label for *_, label, _, is_pick in points if is_pick]
        assert picked == [next(label for *_, label, _, _ in points if label.startswith("int8-cpu (ov)"))]
        assert any(label.startswith("int8-cpu (ort)") for *_, label, _, _ in points)


def test_a_detector_gets_its_precision_recall_and_per_class_picture(tmp_path: Path) -> None:
    from edgepipe.tasks.coco import coco_metrics

    rng = np.random.default_rng(0)
    targets = np.full((40, 3, 5), -1.0)
    targets[:, 0] = np.column_stack([rng.integers(0, 20, (40, 2)), rng.integers(30, 50, (40, 2)),
                                     rng.integers(0, 3, 40)])
    def artifact(name, jitter):
        detections = np.full((40, 5, 6), -1.0)
        detections[:, 0, :4] = targets[:, 0, :4] + rng.normal(0, jitter, (40, 4))
        detections[:, 0, 4], detections[:, 0, 5] = rng.random(40), targets[:, 0, 4]
        coco = coco_metrics(detections, targets, ["a", "b", "c"])
        return {"name": name, "backend": "onnxruntime", "precision": "int8", "score": coco["map50"],
                "metrics": {"map50": coco["map50"], "coco": coco,
                            "per_class_ap50": dict(zip("abc", coco["per_class_ap50"], strict=True))}}

    report = {"recipe": "det", "task": {"name": "detection"}, "dataset": {"name": "canvas", "labels": ["a", "b", "c"]},
              "artifacts": [artifact("original", 1.0), artifact("int8-cpu", 6.0)]}
    path = write_task_plot(tmp_path, report)
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    del report["artifacts"][0]["metrics"]["coco"]["pr50"]  # an older report.json: no curve, no picture
    (tmp_path / "report-task.png").unlink()
    assert write_task_plot(tmp_path, report) is None and not (tmp_path / "report-task.png").exists()


def test_quantize_results_read_back_typed_from_manifests_old_and_new(tmp_path: Path) -> None:
    from edgepipe.artifacts import read_manifest
    from edgepipe.report.results import QuantizedArtifact, QuantizeResult

    before = Path(__file__).parent / "data" / "manifests-before-run-layout" / "quantize"  # before tasks and types
    old = QuantizeResult.model_validate(read_manifest(before).metrics)
    cpu = old.row("int8-cpu")
    assert cpu.score == read_manifest(before).metrics["artifacts"][0]["accuracy_test"] and cpu.drop_val is not None
    assert old.max_drop is None and old.model_extra["max_drop_pts"] == 10.0  # kept, not lost
    row = QuantizedArtifact(name="fp16", file="m.onnx", precision="fp16", track="fp16", size_bytes=3, score=0.9,
                            drop=0.1, score_val=0.8, drop_val=0.2)
    written = QuantizeResult(reference_fp32={"test": 1.0, "size_bytes": 9}, artifacts=[row]).to_json()
    assert QuantizeResult.model_validate(written).row("fp16") == row and "score_test" not in written["artifacts"][0]
