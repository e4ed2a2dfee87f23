"""Exact TensorRT builder configuration per precision x TensorRT version x target (recording fake)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: home of the fakes package

from fakes.onnx_runs import make_run, read_json, tiny_onnx  # noqa: E402
from fakes.tensorrt_fake import install  # noqa: E402

from edgepipe.errors import EdgepipeError, MissingDependency  # noqa: E402
from edgepipe.recipe import BuildConfig  # noqa: E402
from edgepipe.stages.build import build  # noqa: E402

MiB = 1 << 20


def _config_calls(trt) -> list[tuple]:
    keep = (
        "IBuilderConfig.",
        "Builder.create_network",
        "OnnxParser.parse_from_file",
        "IOptimizationProfile.",
    )
    return [(name, *args) for name, args in trt.calls if name.startswith(keep)]


@pytest.mark.parametrize(
    ("version", "precision", "onnx_name", "network_flags", "flags", "calibrator"),
    [
        # 8.x: EXPLICIT_BATCH network, builder flags, INT8 through the cache-serving calibrator
        ("8.6.2", "fp32", "model.onnx", 1, [], False),
        ("8.6.2", "fp16", "model.onnx", 1, ["FP16"], False),
        ("8.6.2", "int8", "model.onnx", 1, ["INT8", "FP16"], True),
        # 10.x: weakly typed network (EXPLICIT_BATCH is ignored from 10.0), flags; INT8 from the QDQ graph
        ("10.3.0", "fp32", "model.onnx", 0, [], False),
        ("10.3.0", "fp16", "model.onnx", 0, ["FP16"], False),
        ("10.3.0", "int8", "model.int8.trt.onnx", 0, ["INT8", "FP16"], False),
        # 11.x: strongly typed only, precision lives in the ONNX, no flags, no calibrator; the real 11.x
        # bindings number STRONGLY_TYPED 0 (EXPLICIT_BATCH is gone), so the flags are 1 << 0
        ("11.0.0", "fp32", "model.onnx", 1, [], False),
        ("11.0.0", "fp16", "model.fp16.onnx", 1, [], False),
        ("11.0.0", "int8", "model.int8.trt.onnx", 1, [], False),
    ],
)
def test_builder_configuration_per_version_and_precision(
    tmp_path, monkeypatch, version, precision, onnx_name, network_flags, flags, calibrator
):
    trt = install(monkeypatch, version)
    run = make_run(tmp_path)
    stage = build(run, None, BuildConfig(precision=precision, workspace_mib=512, batch=(1, 8, 32)))

    calls = _config_calls(trt)
    assert ("Builder.create_network", network_flags) in calls
    assert ("OnnxParser.parse_from_file", onnx_name) in calls
    assert [c[1] for c in calls if c[0] == "IBuilderConfig.set_flag"] == flags
    profile = ("IOptimizationProfile.set_shape", "input", (1, 1, 4, 4), (8, 1, 4, 4), (32, 1, 4, 4))
    assert profile in calls
    assert ("IBuilderConfig.set_memory_pool_limit", "WORKSPACE", 512 * MiB) in calls
    assert any(c[0] == "IBuilderConfig.int8_calibrator=" for c in calls) is calibrator
    assert any(c[0] == "IBuilderConfig.set_calibration_profile" for c in calls) is calibrator
    # nothing DLA, sparse or compatibility related unless asked
    assert not [
        c for c in calls if c[0] in ("IBuilderConfig.DLA_core=", "IBuilderConfig.default_device_type=")
    ]

    manifest = read_json(stage / "manifest.json")
    assert stage == run / f"build-{precision}"
    assert manifest["stage"] == "build"
    artifact = manifest["artifacts"][0]
    assert (artifact["file"], artifact["format"], artifact["precision"]) == (
        f"model.{precision}.engine",
        "engine",
        precision,
    )
    config = manifest["config"]
    assert config["machine"] == {
        "tensorrt_version": version,
        "gpu_name": "NVIDIA Orin",
        "compute_capability": [8, 7],
        "l4t_release": None,
    }
    assert config["settings"]["workspace_mib"] == 512 and config["settings"]["batch"] == [1, 8, 32]
    assert config["applied"]["builder_flags"] == flags
    assert config["applied"]["network_strongly_typed"] is (version.startswith("11"))
    assert Path(config["onnx"]).name == onnx_name
    assert set(manifest["parents"]) == ({"onnx", "calibration_cache"} if calibrator else {"onnx"})


def test_trt_8_2_uses_max_workspace_size(tmp_path, monkeypatch):
    trt = install(monkeypatch, "8.2.1", cc=(5, 3))
    build(make_run(tmp_path), None, BuildConfig(precision="fp16", workspace_mib=256), target="jetson-nano")
    calls = _config_calls(trt)
    assert ("IBuilderConfig.max_workspace_size=", 256 * MiB) in calls
    assert not [c for c in calls if c[0] == "IBuilderConfig.set_memory_pool_limit"]


def test_dla_sparsity_opt_level_compat_and_version_compatible(tmp_path, monkeypatch):
    trt = install(monkeypatch, "10.3.0", num_dla_cores=2)
    run = make_run(tmp_path, prune="2:4")
    config = BuildConfig(precision="int8", dla_core=1, gpu_fallback=True, sparsity=True, batch=(4, 4, 4), opt_level=5,
                         version_compatible=True)
    build(run, None, config, target="jetson-agx-orin")
    calls = _config_calls(trt)
    assert ("IBuilderConfig.default_device_type=", trt.DeviceType.DLA) in calls
    assert ("IBuilderConfig.DLA_core=", 1) in calls
    assert [c[1] for c in calls if c[0] == "IBuilderConfig.set_flag"] == [
        "INT8",
        "FP16",
        "GPU_FALLBACK",
        "SPARSE_WEIGHTS",
        "VERSION_COMPATIBLE",
    ]
    assert ("IBuilderConfig.builder_optimization_level=", 5) in calls
    assert ("IOptimizationProfile.set_shape", "input", (4, 1, 4, 4), (4, 1, 4, 4), (4, 1, 4, 4)) in calls


def test_hardware_compat_level_on_desktop(tmp_path, monkeypatch):
    trt = install(monkeypatch, "10.13.0.35", cc=(8, 6), gpu="NVIDIA RTX A4000", total_mib=16376)
    build(make_run(tmp_path), None, BuildConfig(precision="fp16", hardware_compat="ampere_plus"),
          target="desktop-ampere")
    assert ("IBuilderConfig.hardware_compatibility_level=", trt.HardwareCompatibilityLevel.AMPERE_PLUS) in (
        _config_calls(trt)
    )


def test_tiling_level_is_applied_recorded_and_replayed(tmp_path, monkeypatch):
    trt = install(monkeypatch, "10.13.0.35", cc=(8, 6), gpu="NVIDIA RTX A4000", total_mib=16376)
    stage = build(make_run(tmp_path), None, BuildConfig(precision="fp16", tiling_optimization_level=1))
    assert ("IBuilderConfig.tiling_optimization_level=", trt.TilingOptimizationLevel.FAST) in _config_calls(trt)
    config = read_json(stage / "manifest.json")["config"]
    assert config["settings"]["tiling_optimization_level"] == 1
    assert config["cli_flags"][-2:] == ["--tiling-optimization-level", "1"]  # the rebuild command replays it


def test_timing_cache_is_created_reused_and_saved(tmp_path, monkeypatch):
    trt = install(monkeypatch, "10.3.0")
    run = make_run(tmp_path)
    cache = tmp_path / "timing.cache"
    build(run, None, BuildConfig(precision="fp16"), timing_cache=cache)
    assert ("IBuilderConfig.create_timing_cache", b"") in _config_calls(trt)
    assert ("IBuilderConfig.set_timing_cache", b"", False) in _config_calls(trt)
    assert cache.read_bytes() == b"TIMING(10.3.0)[]"
    trt.calls.clear()
    build(run, None, BuildConfig(precision="fp16"), timing_cache=cache, rebuild=True)
    assert ("IBuilderConfig.create_timing_cache", b"TIMING(10.3.0)[]") in _config_calls(trt)
    assert cache.read_bytes() == b"TIMING(10.3.0)[TIMING(10.3.0)[]]"


def test_a_timing_cache_from_another_release_is_replaced_not_trusted(tmp_path, monkeypatch):
    trt = install(monkeypatch, "10.3.0")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"TIMING(8.6.2)[old tactics]")  # copied from a JetPack 6.0 device
    stage = build(make_run(tmp_path), None, BuildConfig(precision="fp16"), timing_cache=cache)
    calls = _config_calls(trt)
    assert ("IBuilderConfig.set_timing_cache", b"TIMING(8.6.2)[old tactics]", False) in calls
    assert ("IBuilderConfig.set_timing_cache", b"", False) in calls  # a fresh cache instead
    assert "another GPU or TensorRT" in read_json(stage / "manifest.json")["config"]["applied"]["timing_cache"]
    assert cache.read_bytes() == b"TIMING(10.3.0)[]"


def test_unchanged_inputs_skip_the_build_and_rebuild_forces_it(tmp_path, monkeypatch):
    trt = install(monkeypatch, "10.3.0")
    run = make_run(tmp_path)
    build(run, None, BuildConfig(precision="fp16"))
    trt.calls.clear()
    build(run, None, BuildConfig(precision="fp16"))
    assert "Builder.build_serialized_network" not in trt.recorder.names()
    build(run, None, BuildConfig(precision="fp16"), rebuild=True)
    assert "Builder.build_serialized_network" in trt.recorder.names()


def test_best_resolves_through_the_target(tmp_path, monkeypatch):
    install(monkeypatch, "8.2.1", cc=(5, 3))
    stage = build(make_run(tmp_path), None, BuildConfig(precision="best"), target="jetson-nano")
    assert read_json(stage / "manifest.json")["config"]["precision"] == "fp16"


def test_best_on_a_target_builds_what_the_run_has_inputs_for(tmp_path, monkeypatch):
    # desktop-ampere's best is int8; a run that was not quantized for TensorRT builds fp16 instead of failing.
    install(monkeypatch, "10.3.0", cc=(8, 6), gpu="NVIDIA RTX A4000", total_mib=16376)
    stage = build(make_run(tmp_path, qdq=False, cache=False), None, BuildConfig(), target="desktop-ampere")
    config = read_json(stage / "manifest.json")["config"]
    assert config["precision"] == "fp16" and "run `edgepipe quantize`" in config["precision_reason"]


def test_a_recipe_build_section_is_checked_before_training(tmp_path):
    from helpers.recipes import write_recipe

    from edgepipe.recipe import load_recipe
    from edgepipe.stages.pipeline import check_recipe

    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", build={"precision": "fp16", "gpu_fallback": True}))
    with pytest.raises(EdgepipeError, match="--gpu-fallback only applies to DLA"):
        check_recipe(recipe)
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", target="jetson-orin-nano", build={"dla_core": 0}))
    with pytest.raises(EdgepipeError, match="has no DLA cores"):
        check_recipe(recipe)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16", "target": "jetson-orin-nano", "dla_core": 0}, "has no DLA cores"),
        ({"precision": "int8", "target": "jetson-nano"}, "cannot run int8"),
        (
            {"precision": "fp16", "target": "jetson-orin-nano", "workspace_mib": 65536},
            "exceeds jetson-orin-nano",
        ),
        ({"precision": "fp16", "sparsity": True}, "2:4-pruned"),
        ({"precision": "fp16", "gpu_fallback": True}, "--gpu-fallback only applies to DLA"),
        (
            {"precision": "fp32", "target": "jetson-agx-orin", "dla_core": 0, "batch": (1, 1, 1)},
            "DLA cannot run fp32",
        ),
    ],
)
def test_refused_before_tensorrt_is_touched(tmp_path, monkeypatch, kwargs, message):
    trt = install(monkeypatch, "10.3.0")
    with pytest.raises(EdgepipeError, match=message):
        target = kwargs.pop("target", None)
        build(make_run(tmp_path), None, BuildConfig(**kwargs), target=target)
    assert trt.calls == []


def test_target_with_another_tensorrt_is_refused(tmp_path, monkeypatch):
    install(monkeypatch, "10.13.0.35")
    with pytest.raises(
        EdgepipeError, match=r"jetson-nano runs TensorRT 8.0/8.2, this machine has 10.13.0.35"
    ):
        build(make_run(tmp_path), None, BuildConfig(precision="fp16"), target="jetson-nano")


def test_trt11_fp16_without_fp16_onnx_says_run_quantize(tmp_path, monkeypatch):
    install(monkeypatch, "11.0.0")
    with pytest.raises(EdgepipeError, match=r"model.fp16.onnx.*edgepipe quantize"):
        build(make_run(tmp_path, fp16=False), None, BuildConfig(precision="fp16"))


def test_parser_errors_are_shown_node_by_node(tmp_path, monkeypatch):
    install(monkeypatch, "10.3.0", parse_errors=[(1, "Unsupported operator"), (-1, "graph has no outputs")])
    with pytest.raises(EdgepipeError) as info:
        build(make_run(tmp_path), None, BuildConfig(precision="fp32"))
    text = str(info.value)
    assert "node 1 (MatMul 'fc'): Unsupported operator" in text
    assert "model: graph has no outputs" in text
    assert "\n" not in text


def test_rejected_calibration_cache_is_never_silently_recalibrated(tmp_path, monkeypatch):
    install(monkeypatch, "8.6.2", reject_calibration_cache=True)
    run = make_run(tmp_path)
    with pytest.raises(EdgepipeError, match="rejected .*trt.calib.cache.*asked for calibration data"):
        build(run, None, BuildConfig(precision="int8"))
    assert not (run / "build-int8").exists()


def test_calibration_cache_with_wrong_header_is_refused(tmp_path, monkeypatch):
    install(monkeypatch, "8.6.2")
    with pytest.raises(EdgepipeError, match="not an IInt8EntropyCalibrator2 cache"):
        build(make_run(tmp_path, cache_header="TRT-8601-MinMaxCalibration"), None, BuildConfig(precision="int8"))


def test_stale_calibration_cache_is_refused(tmp_path, monkeypatch):
    install(monkeypatch, "8.6.2")
    run = make_run(tmp_path)
    tiny_onnx(run / "export" / "model.onnx", static_batch=2)  # the model changed after quantize
    with pytest.raises(EdgepipeError, match="calibration cache trt.calib.cache is stale: made for model"):
        build(run, None, BuildConfig(precision="int8"))


def test_failed_build_reports_tensorrt_error_and_leaves_nothing(tmp_path, monkeypatch):
    install(monkeypatch, "10.3.0", build_fails=True)
    run = make_run(tmp_path)
    with pytest.raises(EdgepipeError, match="fake: out of workspace memory"):
        build(run, None, BuildConfig(precision="fp16"))
    assert not (run / "build-fp16").exists()


def test_static_batch_onnx_needs_matching_batch(tmp_path, monkeypatch):
    install(monkeypatch, "10.3.0")
    model = tiny_onnx(tmp_path / "static.onnx", static_batch=8)
    with pytest.raises(EdgepipeError, match="static batch of 8; pass --batch 8:8:8"):
        build(model, None, BuildConfig(precision="fp32"))
    stage = build(model, None, BuildConfig(precision="fp32", batch=(8, 8, 8)))
    assert stage == tmp_path / "build-fp32"


def test_without_tensorrt_points_to_the_cpu_artifact(tmp_path):
    # the real loader: here only tensorrt-stubs is installed, an empty namespace package
    run = make_run(tmp_path)
    with pytest.raises(MissingDependency) as info:
        build(run, None, BuildConfig(precision="fp16"))
    assert "tensorrt-stubs" in str(info.value)
    assert str(run / "quantize" / "model.int8.cpu.onnx") in str(info.value)


# --- what older TensorRT releases (JetPack 4.6 / 5.1) do differently -------------------------------------------

def test_a_cache_header_naming_another_release_is_rewritten_to_the_running_one(tmp_path, monkeypatch):
    # quantize wrote the target's nominal 8.6.1; the Jetson runs 8.5.2 and TensorRT would ignore "TRT-8601".
    from edgepipe.device.runtime import make_cache_calibrator

    trt = install(monkeypatch, "8.5.2", cc=(8, 7))
    run = make_run(tmp_path, qdq=False, cache_header="TRT-8601-EntropyCalibration2")
    # The strict fake asks for calibration data when the header names another release: the build would fail.
    stage = build(run, None, BuildConfig(precision="int8"))
    assert "implicit INT8 from trt.calib.cache" in read_json(stage / "manifest.json")["config"]["plan"]
    served = make_cache_calibrator(trt, run / "quantize" / "trt.calib.cache").read_calibration_cache()
    assert served.startswith(b"TRT-8502-EntropyCalibration2\n") and served.endswith(b"logits: 3d8f5c29\n")
    assert (run / "quantize" / "trt.calib.cache").read_bytes().startswith(b"TRT-8601-")  # the file is untouched


def test_settings_a_release_lacks_are_refused_before_the_build(tmp_path, monkeypatch):
    install(monkeypatch, "8.5.2", cc=(8, 7))
    run = make_run(tmp_path)
    for config, flag in ((BuildConfig(precision="fp16", opt_level=5), "--opt-level"),
                         (BuildConfig(precision="fp16", version_compatible=True), "--version-compatible")):
        with pytest.raises(EdgepipeError, match=f"{flag} needs TensorRT 8.6 or newer; this machine has 8.5.2"):
            build(run, None, config)
    install(monkeypatch, "10.3.0", cc=(8, 6), gpu="NVIDIA RTX A4000", total_mib=16376)
    with pytest.raises(EdgepipeError, match="same_cc needs TensorRT 10.9"):
        build(run, None, BuildConfig(precision="fp16", hardware_compat="same_cc"))


def test_nptype_is_never_asked_where_it_crashes(tmp_path, monkeypatch):
    import numpy as np

    from edgepipe.runners.tensorrt import TrtRunner

    trt = install(monkeypatch, "8.2.1", cc=(5, 3))
    if not hasattr(np, "bool"):  # numpy >= 1.24: the real 8.2 nptype raises, and so does the strict fake
        with pytest.raises(AttributeError):
            trt.nptype(trt.DataType.FLOAT)
    stage = build(make_run(tmp_path), None, BuildConfig(precision="fp16", batch=(1, 2, 4)))
    with TrtRunner(stage / "model.fp16.engine") as runner:
        assert runner.outputs[0].dtype == "float32"


def test_a_version_compatible_or_dla_engine_loads_with_its_runtime_settings(tmp_path, monkeypatch):
    from edgepipe.runners.tensorrt import TrtRunner

    trt = install(monkeypatch, "10.3.0", num_dla_cores=2)
    run = make_run(tmp_path)
    stage = build(run, None, BuildConfig(precision="fp16", version_compatible=True))
    trt.calls.clear()
    with TrtRunner(stage / "model.fp16.engine"):
        pass
    assert ("Runtime.engine_host_code_allowed=", (True,)) in trt.calls
    dla = build(run, tmp_path / "dla", BuildConfig(precision="fp16", dla_core=1, batch=(4, 4, 4)),
                target="jetson-agx-orin")
    trt.calls.clear()
    with TrtRunner(dla / "model.fp16.engine"):
        pass
    assert ("Runtime.DLA_core=", (1,)) in trt.calls


@pytest.mark.parametrize("version, jetpack", [("8.4.1", "5.0.2"), ("8.5.2", "5.1"), ("8.6.2", "6.0"),
                                              ("10.3.0", "6.1")])
def test_an_orin_on_any_of_its_jetpacks_is_never_refused(tmp_path, monkeypatch, version, jetpack):
    # Before: the profile pinned one TensorRT per module, so an AGX Orin on JetPack 5.1 or 6.0 was refused.
    install(monkeypatch, version, cc=(8, 7))
    stage = build(make_run(tmp_path), None, BuildConfig(precision="fp16"), target="jetson-agx-orin")
    assert read_json(stage / "manifest.json")["config"]["jetpack"] == jetpack
