"""edgepipe's build -> serialize -> deserialize -> execute paths through NVIDIA's real TensorRT bindings.

Per release with a bindings wheel and headers, the real ``tensorrt`` module runs over the fake C++ core
(tests/realtrt/core/fakecore.cpp, compiled against that release's headers) in a subprocess: every call edgepipe
makes is converted and checked by NVIDIA's pybind11 code, reaches the core through the real vtables, and lands
in the core's call log. The engine the core serializes is loaded back by the device runtime and executed; the
outputs (sum(x) * (k + 1)) prove the bytes went through the ctypes CUDA path and the core.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.bundles import add_quantize_stage

from edgepipe.stages.bundle import make_bundle
from realtrt.releases import HERE, WITH_FAKE_CORE, environment, fake_core, require_release

# onnx TensorProto element type -> nvinfer1::DataType (NvInferRuntimeBase.h: kFLOAT 0, kHALF 1, kINT8 2, kINT32 3)
TRT_TYPES = {1: 0, 10: 1, 3: 2, 6: 3}


def describe_for_fake_parser(onnx_path: Path) -> None:
    """<model>.onnx.fakecore: the graph's inputs and outputs, which the fake ONNX parser declares on the network."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    lines = []
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            lines.append(" ".join([kind, value.name, str(TRT_TYPES[tensor.elem_type]), str(len(dims)),
                                   *map(str, dims)]))
    Path(str(onnx_path) + ".fakecore").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def bundle(tiny_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("real-trt-run") / "run"
    shutil.copytree(tiny_run, run)
    add_quantize_stage(run)
    made = make_bundle(run, "jetson-orin-nano", tmp_path_factory.mktemp("real-trt") / "bundle", samples=24)
    for path in made.rglob("*.onnx"):
        describe_for_fake_parser(path)
    return made


@pytest.fixture(scope="module")
def run_dir(tiny_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("real-trt-ws") / "run"
    shutil.copytree(tiny_run, run)
    add_quantize_stage(run)
    for path in run.rglob("*.onnx"):
        describe_for_fake_parser(path)
    return run


def _drive(release, mode: str, target: Path, precision: str, tmp_path: Path, *extra: str,
           dla_cores: int = 0, **env_extra: str) -> tuple[dict, list[str]]:
    import subprocess
    import sys

    env = environment(release, fake_core(release))
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "fakecore.log"
    env["FAKECORE_LOG"] = str(log)
    env["FAKECORE_DLA_CORES"] = str(dla_cores)
    env.update(env_extra)
    out = tmp_path / "result.json"
    result = subprocess.run([sys.executable, str(HERE / "drive.py"), mode, str(target), precision, str(out), *extra],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = json.loads(out.read_text())
    found["stderr"] = result.stderr
    return found, log.read_text().splitlines() if log.is_file() else []


def _precision(release) -> str:
    # 8.x: implicit INT8 through the calibrator serving trt.calib.cache; 10.x: QDQ graph with the INT8 flag;
    # 11.x: the QDQ graph on a strongly typed network. Each major's INT8 path is its most involved one.
    return "int8"


@pytest.mark.parametrize("release", WITH_FAKE_CORE, ids=lambda r: r.key)
def test_device_runtime_builds_loads_and_runs_through_the_real_bindings(release, bundle, tmp_path):
    require_release(release)
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    result, log = _drive(release, "device", copy, _precision(release), tmp_path)
    assert result["tensorrt"] == release.version
    assert result["build"] == 0 and result["eval"] in (0, 1), result["stderr"]
    engine = copy / "build-int8" / "model.int8.engine"
    # the core's NV_TENSORRT_VERSION is its headers' (v10.16 headers are 10.16.0 under the 10.16.1 bindings)
    built_by = int(engine.read_bytes().split(b"\n")[0].split()[1])
    assert built_by // 100 == release.lib_version // 100

    calls = [line.split(" ")[0] for line in log]
    builds = calls[:calls.index("IBuilder::buildSerializedNetwork") + 1]
    flags = ["IBuilderConfig::setFlag", "IBuilderConfig::setFlag"] if release.major < 11 else []
    calibrator = ["IBuilderConfig::setInt8Calibrator", "IBuilderConfig::setCalibrationProfile"] \
        if release.major == 8 else []
    assert builds == ["createInferBuilder", "IBuilder::createNetworkV2", "createNvOnnxParser", "IParser::parseFromFile",
                      "IBuilder::createBuilderConfig", "IBuilderConfig::setMemoryPoolLimit", *flags,
                      "IBuilder::createOptimizationProfile", "IOptimizationProfile::setDimensions",
                      "IOptimizationProfile::setDimensions", "IOptimizationProfile::setDimensions",
                      "IBuilderConfig::addOptimizationProfile", *calibrator, "IBuilder::buildSerializedNetwork"]
    if release.major == 8:  # the cache was served with this release's header: no calibration batches asked
        assert "IInt8Calibrator::readCalibrationCache" in calls and "IInt8Calibrator::getBatch" not in calls
    runtimes = [i for i, call in enumerate(calls) if call == "createInferRuntime"]  # build's check, eval, infer...
    evaluated = calls[runtimes[1]:runtimes[2]]
    assert evaluated.count("IExecutionContext::enqueueV3") == 3  # 24 samples in chunks of the profile max (8)

    # infer, bench, triton and doctor open the same engine through the same bindings
    assert [result[c] for c in ("infer", "bench", "triton", "doctor")] == [0] * 4, result["stderr"]
    doctor = json.loads((tmp_path / "result.json.doctor.json").read_text())
    assert doctor["tensorrt"] == release.version
    assert "max_batch_size: 8" in next((tmp_path / "result.json.triton").rglob("config.pbtxt")).read_text()

    report = json.loads(Path(str(tmp_path / "result.json") + ".eval.json").read_text())
    row = report["artifacts"][1]
    assert row["name"] == "tensorrt-int8" and row["backend"] == "tensorrt"
    x = np.load(copy / "reference.npz")["x"]
    expected = np.where(x.reshape(len(x), -1).sum(1) > 0, 3, 0)  # argmax of sum(x) * (1, 2, 3, 4)
    assert row["score"] == pytest.approx(float((expected == np.load(copy / "reference.npz")["y"]).mean()))


@pytest.mark.parametrize("release", WITH_FAKE_CORE, ids=lambda r: r.key)
def test_workstation_build_and_runner_through_the_real_bindings(release, run_dir, tmp_path):
    """`edgepipe build` (stages.build, twice: the second reuses the timing cache) with every builder option the
    release has, then TrtRunner on the engine: a version-compatible plan needs engine_host_code_allowed."""
    require_release(release)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    options = {"opt_level": 2, "version_compatible": True, "hardware_compat": "ampere_plus", "workspace_mib": 256}
    result, log = _drive(release, "workstation", run, "fp16", tmp_path, json.dumps(options))
    applied = result["manifest"]["config"]["applied"]
    assert applied["builder_optimization_level"] == 2 and applied["hardware_compatibility_level"] == "AMPERE_PLUS"
    assert applied["timing_cache"] == "reused"
    assert "IBuilderConfig::setBuilderOptimizationLevel 2" in log
    assert "IBuilderConfig::setHardwareCompatibilityLevel 1" in log  # AMPERE_PLUS
    assert f"IBuilderConfig::setMemoryPoolLimit 0 {256 << 20}" in log  # WORKSPACE
    assert "IRuntime::setEngineHostCodeAllowed 1" in log
    x = np.array(result["inputs"], np.float32)
    expected = x.reshape(len(x), -1).sum(1, keepdims=True) * np.arange(1, 5, dtype=np.float32)
    np.testing.assert_allclose(np.array(result["outputs"]["logits"]), expected, rtol=1e-5)
    assert result["gpu_compute_ms"] > 0


@pytest.mark.parametrize("release", [r for r in WITH_FAKE_CORE if r.major < 11], ids=lambda r: r.key)
def test_a_dla_build_through_the_real_bindings(release, bundle, tmp_path):
    """DLA (Xavier/Orin, TensorRT 8.x/10.x): default device type, DLA core, GPU fallback on the config; the
    runtime picks the core at deserialization."""
    require_release(release)
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    result, log = _drive(release, "device", copy, "fp16", tmp_path, "--dla-core", "1", "--gpu-fallback",
                         "--batch", "4:4:4", dla_cores=2)
    assert result["build"] == 0, result["stderr"]
    assert {"IBuilderConfig::setDefaultDeviceType 1", "IBuilderConfig::setDLACore 1",
            "IRuntime::setDLACore 1"} <= set(log)


def _release(key: str):
    return next(r for r in WITH_FAKE_CORE if r.key == key)


def test_failures_carry_tensorrt_own_words_through_the_real_bindings(bundle, tmp_path):
    """A parser failure names the node from IParserError; a stale calibration cache (TensorRT asking the
    calibrator for batches) is refused; an engine of another release does not load, with the core's reason."""
    for key in ("8.6", "11.0", "11.1"):
        require_release(_release(key))
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    qdq = copy / "quantize" / "model.int8.trt.onnx.fakecore"
    described = qdq.read_text()
    qdq.write_text(described + "error 3 0 0\n")
    result, _ = _drive(_release("11.1"), "device", copy, "int8", tmp_path / "a")
    assert result["build"] == 2
    assert "TensorRT's ONNX parser rejected" in result["stderr"]
    assert "node 3: fake core: unsupported operator at node 3" in result["stderr"]
    qdq.write_text(described)

    result, log = _drive(_release("8.6"), "device", copy, "int8", tmp_path / "b",
                         FAKECORE_REJECT_CALIBRATION_CACHE="1")
    assert result["build"] == 2 and "IInt8Calibrator::getBatch -> 0" in log
    assert "TensorRT rejected" in result["stderr"] and "asked for calibration data" in result["stderr"]

    result, _ = _drive(_release("11.0"), "device", copy, "int8", tmp_path / "c")
    assert result["build"] == 0, result["stderr"]
    result, _ = _drive(_release("11.1"), "load", copy / "build-int8" / "model.int8.engine", "-", tmp_path / "d")
    assert "does not load" in result["error"]
    assert "not compatible with this version of TensorRT, expecting library version 110100 got 110000" in \
        result["error"]


@pytest.mark.parametrize("key", ["10.3", "10.16"])
def test_implicit_int8_on_10x_through_the_real_calibrator_trampoline(key, run_dir, tmp_path):
    """TensorRT 10.x without a QDQ graph: INT8 from trt.calib.cache through edgepipe's IInt8EntropyCalibrator2
    subclass, which the core calls back through NVIDIA's pybind11 trampoline (readCalibrationCache)."""
    release = _release(key)
    require_release(release)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "quantize" / "model.int8.trt.onnx").unlink()
    result, log = _drive(release, "workstation", run, "int8", tmp_path)
    assert result["manifest"]["config"]["plan"] == \
        "TensorRT 10: implicit INT8 from trt.calib.cache (no QDQ graph found)"
    assert "IBuilderConfig::setInt8Calibrator" in log and "IBuilderConfig::setCalibrationProfile" in log
    assert any(line.startswith("IInt8Calibrator::readCalibrationCache") for line in log)
    assert not any(line.startswith("IInt8Calibrator::getBatch") for line in log)  # the rewritten header matched


def test_a_core_that_does_not_match_its_headers_fails_at_build_naming_them(tmp_path, monkeypatch):
    """Headers whose IBuilderConfig::setFlag signature differs from what fakecore.cpp overrides: the core's build
    stops with the headers named, not a crash at run time."""
    import tarfile

    from realtrt import releases

    release = _release("11.1")
    if releases.compiler_missing("g++"):
        pytest.skip(releases.compiler_missing("g++"))
    source = tmp_path / "include"
    source.mkdir()
    with tarfile.open(releases.HEADERS / "tensorrt-v11.1.tar.xz") as archive:
        archive.extractall(source, filter="data")
    impl = source / "NvInferImpl.h"
    text = impl.read_text()
    assert "virtual void setFlag(BuilderFlag builderFlag) noexcept = 0;" in text
    impl.write_text(text.replace("virtual void setFlag(BuilderFlag builderFlag) noexcept = 0;",
                                 "virtual void setFlag(BuilderFlag builderFlag, bool on) noexcept = 0;"))
    (tmp_path / "headers").mkdir()
    with tarfile.open(tmp_path / "headers" / "tensorrt-v11.1.tar.xz", "w:xz") as archive:
        archive.add(source, arcname=".")
    monkeypatch.setattr(releases, "HEADERS", tmp_path / "headers")
    monkeypatch.setenv(releases.WHEELS_ENV, str(tmp_path / "cache"))
    with pytest.raises(releases.FakeCoreBuildError, match=r"does not compile against the v11.1 headers .*setFlag"):
        releases.fake_core(release)
