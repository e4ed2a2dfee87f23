"""The device runtime (the edgepipe/device/ package): Python 3.6 syntax, no heavy imports, every TensorRT release.

Per release, the recording fake is checked to offer only names that release's Python bindings define
(tests/data/trt_api/<release>.json, extracted from NVIDIA/TensorRT's own pybind11 sources), and then the
runtime builds, loads and runs a bundle on that fake: an AttributeError would mean the runtime touched a
name the release lacks, so a passing run proves every attribute used exists in that release.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes.tensorrt_fake import ENGINE_MAGIC, FAKE_ACTIVATION_BYTES, install, make_tensorrt
from helpers.bundles import add_quantize_stage

from edgepipe.artifacts import sha256_file
from edgepipe.device import cuda as device_cuda
from edgepipe.device import layout as runtime_layout
from edgepipe.device import runtime
from edgepipe.device import trtexec as trtexec_module
from edgepipe.stages.bundle import make_bundle

REPO = Path(__file__).resolve().parents[2]
PACKAGE, LAUNCHER = REPO / "edgepipe" / "device", REPO / "edgepipe" / "device" / "launcher.py"
MODULES = sorted(path for path in PACKAGE.glob("*.py") if path != LAUNCHER)
SURFACES = REPO / "tests" / "data" / "trt_api"
# (fake version, extracted surface): every release family the runtime claims.
RELEASES = [("8.0.1", "8.0"), ("8.2.1", "8.2"), ("8.4.3", "8.4"), ("8.5.2", "8.5"), ("8.6.1", "8.6"),
            ("10.3.0", "10.3"), ("10.13.0", "10.13"), ("11.0.0", "11.0")]
VERMIN = [sys.executable, "-c", "import sys, vermin; sys.argv[0] = 'vermin'; sys.exit(vermin.main())"]
BLOCKED = ["torch", "sklearn", "pydantic", "typer", "rich", "yaml", "onnx", "onnxruntime", "pycuda", "PIL",
           "edgepipe", "matplotlib", "torchvision"]


@pytest.fixture(scope="module")
def bundle(tiny_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("device-run") / "run"
    shutil.copytree(tiny_run, run)
    add_quantize_stage(run)
    return make_bundle(run, "jetson-orin-nano", tmp_path_factory.mktemp("device") / "bundle", samples=40)


@pytest.fixture
def fresh(bundle, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    return copy


def _main(*argv: str) -> int:
    return runtime.main([str(a) for a in argv])


# --- Python 3.6 and nothing heavy ---------------------------------------------------------------------------------

def test_vermin_finds_nothing_newer_than_python_3_6():
    result = subprocess.run([*VERMIN, "-t=3.6-", "--violations", "--no-tips", *map(str, MODULES)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    launcher = subprocess.run([*VERMIN, "-t=2.7-", "-t=3.0-", "--violations", "--no-tips",
                               str(LAUNCHER)], capture_output=True, text=True)
    assert launcher.returncode == 0, launcher.stdout + launcher.stderr  # parses anywhere, to refuse in one line


def _imports(path: Path) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or "").split(".")[0])
    return imported


def test_the_runtime_imports_nothing_of_edgepipe_and_only_allowed_modules():
    """The standard library, numpy and (only inside OrtModel, the optional CPU fallback) onnxruntime; its own
    modules relatively (one package, in edgepipe or a bundle: no try/except double imports)."""
    allowed = {"argparse", "ctypes", "glob", "hashlib", "importlib", "json", "os", "shutil", "subprocess", "sys",
               "time", "numpy", "onnxruntime", "zipfile"} | {"." + path.stem for path in MODULES}
    for module in MODULES:
        assert _imports(module) <= allowed, (module.name, _imports(module) - allowed)
        assert "try:\n    from ." not in module.read_text(), module.name
    assert _imports(PACKAGE / "scoring.py") == {"numpy"}
    assert _imports(PACKAGE / "bounds.py") <= {"numpy", "json", "os", "zipfile"}  # it reads headers, not data
    assert _imports(PACKAGE / "cuda.py") <= {"ctypes", "glob", "os", "sys", "numpy", ".errors"}


def test_no_module_of_the_package_is_over_500_lines():
    sizes = {path.name: len(path.read_text().splitlines()) for path in MODULES}
    assert max(sizes.values()) <= 500, sizes


def test_a_python_too_old_gets_one_line_and_exit_2(tmp_path):
    code = ("import sys; sys.version_info = (3, 5, 2, 'final', 0); sys.argv = ['edgepipe_device.py', 'eval', '.']; "
            f"exec(compile(open({str(LAUNCHER)!r}).read(), 'edgepipe_device.py', 'exec'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "Python 3.5 is too old" in result.stderr


def test_the_bundled_runtime_runs_with_every_heavy_package_blocked(fresh):
    """The bundle's own copy, run as a Jetson would: torch, sklearn, pydantic, ..., onnxruntime and edgepipe
    itself unimportable. With neither TensorRT nor onnxruntime, eval says so in one line and exits 2."""
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {BLOCKED!r}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = ['edgepipe_device.py'] + sys.argv[1:]\n"
        f"launcher = {str(fresh / 'edgepipe_device.py')!r}\n"
        "exec(compile(open(launcher).read(), launcher, 'exec'), {'__file__': launcher, '__name__': '__main__'})\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", blocker, "eval", str(fresh)], capture_output=True, text=True,
                            cwd=fresh.parent, env=env)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: neither TensorRT nor onnxruntime is importable here"), result.stderr
    assert "Traceback" not in result.stderr


def test_layout_names_agree_with_run_py():
    from edgepipe import run

    assert (runtime.MANIFEST, runtime.EXPORT, runtime.QUANTIZE, runtime.BUILD) == (
        "manifest.json", run.EXPORT, run.QUANTIZE, run.BUILD)
    assert (runtime.FP32_ONNX, runtime.FP16_ONNX, runtime.INT8_TRT_ONNX, runtime.CALIB_CACHE) == (
        run.FP32_ONNX, run.FP16_ONNX, run.INT8_TRT_ONNX, run.CALIB_CACHE)
    assert (runtime.REFERENCE_NPZ, runtime.engine_file("fp16")) == (run.REFERENCE_NPZ, run.engine_file("fp16"))
    from edgepipe import targets

    assert targets.PRECISIONS is runtime.PRECISIONS  # one precision order, the device's, imported not copied
    assert targets.resolve_precision(targets.get_target("jetson-agx-orin"), "best")[0] == runtime.PRECISIONS[0]


# --- per-release API surfaces --------------------------------------------------------------------------------------

def _surface(release: str) -> dict:
    return json.loads((SURFACES / f"{release}.json").read_text())


def _members(surface: dict, cls: str) -> set[str]:
    found = set(surface["classes"].get(cls, []))
    for base in surface.get("bases", {}).get(cls, []):
        found |= _members(surface, base)
    return found


def test_surfaces_name_their_source_and_differ_where_nvidia_says():
    for _, release in RELEASES:
        source = _surface(release)["source"]
        if source.get("kind") == "wheel":  # introspected from NVIDIA's real bindings (tests/realtrt/)
            assert source["version"].startswith(release + ".") and source["module_version"] == source["version"]
        else:  # 8.0-8.5: Jetson-only, no wheel; extracted from the binding sources
            assert source["repo"] == "NVIDIA/TensorRT" and source["ref"] == f"release/{release}" and source["commit"]
    assert "execute_async_v2" in _members(_surface("8.2"), "IExecutionContext")
    assert "num_io_tensors" not in _members(_surface("8.4"), "ICudaEngine")
    assert {"num_bindings", "num_io_tensors"} <= _members(_surface("8.5"), "ICudaEngine")
    assert "num_bindings" not in _members(_surface("10.3"), "ICudaEngine")
    assert "max_workspace_size" in _members(_surface("8.2"), "IBuilderConfig")
    assert "builder_optimization_level" in _members(_surface("8.6"), "IBuilderConfig")
    assert "builder_optimization_level" not in _members(_surface("8.5"), "IBuilderConfig")
    assert "engine_host_code_allowed" in _members(_surface("8.6"), "Runtime")
    assert "SAME_COMPUTE_CAPABILITY" in _surface("10.13")["enums"]["HardwareCompatibilityLevel"]
    assert "SAME_COMPUTE_CAPABILITY" not in _surface("10.3")["enums"]["HardwareCompatibilityLevel"]
    assert "INT8" not in _surface("11.0")["enums"]["BuilderFlag"]


@pytest.mark.parametrize(("version", "release"), RELEASES)
def test_the_fake_offers_only_names_that_release_has(version, release):
    surface = _surface(release)
    trt = make_tensorrt(version)
    unknown = []
    for name, value in vars(trt).items():
        if name.startswith("_") or name in {"calls", "recorder", "memory", "cudart"}:
            continue
        real = getattr(value, "REAL", None)
        if real in surface["enums"]:
            members = {k for k in vars(value) if not k.startswith("_") and k != "REAL"}
            unknown += [f"{real}.{m}" for m in members - set(surface["enums"][real])]
        elif real is not None:
            own = set(getattr(value, "SETTABLE", ()))
            for klass in value.__mro__:
                if klass.__module__ != "builtins":
                    own |= {k for k in vars(klass) if not k.startswith("_") and k not in ("REAL", "SETTABLE")}
            if real == "Logger":  # severities: Logger.Severity, bound on ILogger from 8.2 and copied onto Logger
                own -= set(surface["enums"].get("Logger.Severity", []))
            if real not in surface["classes"]:
                unknown.append(real)
            unknown += [f"{real}.{m}" for m in sorted(own - _members(surface, real))]
        elif name not in set(surface["module"]) | set(surface.get("module_cpp", [])):
            unknown.append(name)
    assert unknown == [], f"the {version} fake offers names TensorRT {release} lacks: {unknown}"


def _call_names(trt) -> list[str]:
    return [name for name in trt.recorder.names() if not name.startswith("cudart.")]


@pytest.mark.parametrize(("version", "release"), RELEASES)
def test_build_load_and_infer_on_every_release(fresh, monkeypatch, version, release, capsys):
    trt = install(monkeypatch, version, cc=(8, 7), classes=4)  # the tiny run's 4 classes
    major = runtime.version_tuple(version)[0]
    precision = "int8"
    assert _main("build", fresh, "--precision", precision, "--batch", "1:4:8") == 0
    built = json.loads((fresh / f"build-{precision}" / "manifest.json").read_text())
    plan = built["config"]["plan"]
    if major == 8:
        assert plan == "TensorRT 8: implicit INT8 from trt.calib.cache on model.onnx"
    elif major == 10:
        assert plan == "TensorRT 10: explicit INT8 from the QDQ graph model.int8.trt.onnx"
    else:
        assert plan == "TensorRT 11: strongly typed network from model.int8.trt.onnx"
    build_calls = _call_names(trt)
    pool = ["IBuilderConfig.set_memory_pool_limit"] if runtime.version_tuple(version) >= (8, 4) else [
        "IBuilderConfig.max_workspace_size="]
    flags = ["IBuilderConfig.set_flag", "IBuilderConfig.set_flag"] if major < 11 else []
    calibrator = (["IBuilderConfig.int8_calibrator=", "IBuilderConfig.set_calibration_profile"] if major == 8 else [])
    assert build_calls == ["Builder", "Builder.create_network", "OnnxParser", "OnnxParser.parse_from_file",
                           "Builder.create_builder_config", *pool, *flags, "Builder.create_optimization_profile",
                           "IOptimizationProfile.set_shape", "IBuilderConfig.add_optimization_profile",
                           *calibrator, "Builder.build_serialized_network", "Runtime",
                           "Runtime.deserialize_cuda_engine"]
    assert ("IOptimizationProfile.set_shape", ("input", (1, *built["config"]["input"]["shape"][1:]),
                                               (4, *built["config"]["input"]["shape"][1:]),
                                               (8, *built["config"]["input"]["shape"][1:]))) in trt.calls
    if major == 8:  # the cache is served with the running release's header, so TensorRT uses it
        assert built["config"]["applied"]["int8_calibrator"] == "IInt8EntropyCalibrator2 serving trt.calib.cache"
    engine = fresh / f"build-{precision}" / f"model.{precision}.engine"
    assert engine.read_bytes().startswith(ENGINE_MAGIC)
    assert built["artifacts"][0]["sha256"] == sha256_file(engine)

    trt.calls.clear()
    capsys.readouterr()
    assert _main("eval", fresh, "--json", fresh / "eval.json") in (0, 1)
    report = json.loads((fresh / "eval.json").read_text())
    row = report["artifacts"][1]
    assert row["name"] == f"tensorrt-{precision}" and row["backend"] == "tensorrt"
    names = _call_names(trt)
    execute = "IExecutionContext.execute_async_v3" if runtime.version_tuple(version) >= (8, 5) else \
        "IExecutionContext.execute_async_v2"
    assert names[:3] == ["Runtime", "Runtime.deserialize_cuda_engine", "ICudaEngine.create_execution_context"]
    assert names.count(execute) == 5  # 40 samples in chunks of the profile max (8)
    # The outputs are the fake engine's sum(x) * (k + 1): check the data went through the engine.
    x, _, _ = runtime.Bundle(fresh).reference()
    expected = np.where(x.reshape(len(x), -1).sum(1) > 0, 3, 0)  # argmax of sum(x) * (1, 2, 3, 4)
    assert row["score"] == pytest.approx(float((expected == np.load(fresh / "reference.npz")["y"]).mean()))


def test_build_refuses_what_the_running_release_lacks(fresh, monkeypatch):
    install(monkeypatch, "8.5.2", cc=(8, 7))
    settings = runtime.BuildSettings("fp16", opt_level=3)
    with pytest.raises(runtime.DeviceError, match=r"--opt-level needs TensorRT 8.6 or newer; this machine has 8.5.2"):
        runtime.check_release_supports(runtime.import_tensorrt(), settings)
    with pytest.raises(runtime.DeviceError, match=r"--tiling-optimization-level needs TensorRT 10.8 or newer; this "
                                                  r"machine has 10.3.0"):
        runtime.check_release_supports(make_tensorrt("10.3.0"), runtime.BuildSettings("fp16",
                                                                                      tiling_optimization_level=2))


def test_every_setting_reaches_the_builder_from_the_device_command_line(fresh, monkeypatch):
    """The device's build options come from the settings table: a setting added there is taken, applied and
    recorded with nothing else to change (here the tiling level, TensorRT 10.8+)."""
    trt = install(monkeypatch, "10.13.0", cc=(8, 7), classes=4)
    assert _main("build", fresh, "--precision", "fp16", "--batch", "1:4:8", "--opt-level", "4",
                 "--tiling-optimization-level", "2") == 0
    assert ("IBuilderConfig.tiling_optimization_level=", (trt.TilingOptimizationLevel.MODERATE,)) in trt.calls
    assert ("IBuilderConfig.builder_optimization_level=", (4,)) in trt.calls
    built = json.loads((fresh / "build-fp16" / "manifest.json").read_text())["config"]
    assert built["applied"]["tiling_optimization_level"] == "MODERATE"
    assert built["settings"]["tiling_optimization_level"] == 2 and built["settings"]["opt_level"] == 4
    assert _main("build", fresh, "--precision", "fp16", "--tiling-optimization-level", "4") == 2  # 0..3


def test_a_version_compatible_engine_loads_with_host_code_allowed(fresh, monkeypatch):
    trt = install(monkeypatch, "10.3.0", cc=(8, 7))
    plan = runtime.plan_build(runtime.Bundle(fresh).build_files(), "fp16", 10)
    result = runtime.build_serialized_engine(trt, plan, runtime.BuildSettings("fp16", version_compatible=True))
    engine = fresh / "vc.engine"
    engine.write_bytes(bytes(result["engine"]))
    with pytest.raises(runtime.DeviceError, match="does not load"):
        runtime.Engine(engine, {})
    with runtime.Engine(engine, {"version_compatible": True}) as loaded:
        assert loaded.infer(np.ones((2, *loaded.inputs[0].shape[1:]), np.float32))["logits"].shape == (2, 10)
    with pytest.raises(runtime.DeviceError, match="outside the engine's profile"):
        loaded = runtime.Engine(engine, {"version_compatible": True})
        try:
            loaded.infer({"input": np.ones((2, 99), np.float32)})
        finally:
            loaded.close()


# --- the commands ------------------------------------------------------------------------------------------------

def test_eval_on_onnxruntime_reproduces_the_full_eval_exactly(fresh, capsys):
    """No TensorRT here (only its stubs): the runtime evaluates the bundle's ONNX files on onnxruntime, says so,
    and gets the same accuracy, drop and agreement as `edgepipe eval BUNDLE` for every artifact."""
    from edgepipe.stages.evaluate import evaluate

    code = _main("eval", fresh, "--json", fresh / "device-eval.json")
    captured = capsys.readouterr()
    assert "evaluating the bundle's ONNX files on onnxruntime's CPU provider instead" in captured.err
    device = {row["name"]: row for row in json.loads((fresh / "device-eval.json").read_text())["artifacts"]}
    full = {row["name"]: row for row in evaluate(fresh)["artifacts"]}
    assert set(device) == set(full) and len(device) >= 4  # original, fp32 export, fp16, int8-trt
    for name, row in full.items():
        assert device[name]["score"] == row["score"], name
        assert device[name]["drop"] == row["drop"], name
        assert device[name]["agreement"] == row["agreement"], name
    assert code == (0 if all(row.get("within_budget", True) for row in full.values()) else 1)
    assert "top-1" in captured.out and "eval on 40 bundled samples" in captured.out


def test_bench_reports_percentiles_throughput_and_device_memory(fresh, monkeypatch, capsys):
    install(monkeypatch, "10.3.0", cc=(8, 7), classes=4)
    assert _main("build", fresh, "--precision", "fp16", "--batch", "1:4:8") == 0
    assert _main("bench", fresh, "--batch", "4", "--seconds", "0.05", "--json", fresh / "bench.json") == 0
    (row,) = json.loads((fresh / "bench.json").read_text())["rows"]
    assert row["name"] == "tensorrt-fp16" and row["batch"] == 4 and row["iterations"] >= 50
    assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["compute_p50_ms"] == 0.25
    io_bytes = 8 * 144 * 4 + 8 * 4 * 4  # input and output at the profile max (8)
    assert row["engine_memory_bytes"] == FAKE_ACTIVATION_BYTES + io_bytes and row["device_memory_bytes"] >= io_bytes
    assert "p99 ms" in capsys.readouterr().out


def test_infer_prints_top_labels_and_refuses_a_wrong_shape(fresh, tmp_path, capsys):
    x, _, _ = runtime.Bundle(fresh).reference()
    np.save(tmp_path / "inputs.npy", x[:3])
    assert _main("infer", fresh, tmp_path / "inputs.npy", "--top", "2", "--json", tmp_path / "out.json") == 0
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    assert len(results) == 3 and len(results[0]["top"]) == 2
    labels = runtime.Bundle(fresh).labels()
    assert results[0]["top"][0]["label"] in labels
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 5, 5), np.float32))
    capsys.readouterr()
    assert _main("infer", fresh, tmp_path / "wrong.npy") == 2
    assert "the model takes" in capsys.readouterr().err


# --- bad input: one line, exit 2, named -----------------------------------------------------------------------

def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ")
    return lines[-1]


def test_a_bundle_missing_a_file_or_with_a_changed_file_is_named(fresh, capsys):
    (fresh / "quantize" / "model.fp16.onnx").unlink()
    assert _main("eval", fresh) == 2
    assert "is missing quantize/model.fp16.onnx" in _one_error_line(capsys)
    shutil.copyfile(fresh / "export" / "model.onnx", fresh / "quantize" / "model.fp16.onnx")
    assert _main("eval", fresh) == 2
    assert "quantize/model.fp16.onnx differs from the file bundled" in _one_error_line(capsys)


def test_a_bundle_for_another_target_is_refused(fresh, monkeypatch, capsys):
    install(monkeypatch, "8.5.2", cc=(7, 2), gpu="Xavier")
    assert _main("build", fresh) == 2
    line = _one_error_line(capsys)
    assert "made for jetson-orin-nano (sm_87); this GPU is Xavier (sm_72)" in line
    assert not any(path.name.startswith("build-") for path in fresh.iterdir())  # nothing written


def test_a_cache_for_another_model_is_refused(fresh, monkeypatch, capsys):
    install(monkeypatch, "8.5.2", cc=(8, 7))
    manifest_path = fresh / "quantize" / "manifest.json"
    quantize = json.loads(manifest_path.read_text())
    quantize["calibration_cache"]["model_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(quantize))
    bundle_manifest = json.loads((fresh / "manifest.json").read_text())
    for entry in bundle_manifest["files"]:  # a bundle made that way, consistently hashed
        if entry["path"] == "quantize/manifest.json":
            entry.update(sha256=sha256_file(manifest_path), size_bytes=manifest_path.stat().st_size)
    (fresh / "manifest.json").write_text(json.dumps(bundle_manifest))
    assert _main("build", fresh, "--precision", "int8") == 2
    assert "calibration cache trt.calib.cache is stale: made for model sha256 000000000000" in _one_error_line(capsys)


def test_tensorrt_and_trtexec_both_missing_is_one_line(fresh, monkeypatch, capsys):
    monkeypatch.setattr(trtexec_module, "TRTEXEC", str(fresh / "no-trtexec"))
    monkeypatch.setattr(trtexec_module.shutil, "which", lambda name: None)
    assert _main("build", fresh) == 2
    line = _one_error_line(capsys)
    assert "neither TensorRT's Python bindings nor trtexec are here" in line


def test_without_python_bindings_build_runs_trtexec_from_the_bundle(fresh, monkeypatch, tmp_path, capsys):
    """A fake trtexec that reports TensorRT 8.5.2 and writes the engine where --saveEngine says."""
    trtexec = tmp_path / "trtexec"
    banner = "&&&& RUNNING TensorRT.trtexec [TensorRT v8502]"
    trtexec.write_text("#!/bin/sh\n"
                       f"if [ \"$1\" = --help ]; then echo '{banner}'; exit 0; fi\n"
                       f"echo \"$@\" > {tmp_path / 'argv.txt'}\n"
                       "for a in \"$@\"; do case $a in --saveEngine=*) echo plan > \"${a#--saveEngine=}\";; "
                       f"--calib=*) cp \"${{a#--calib=}}\" {tmp_path / 'served.cache'};; esac; done\n")
    trtexec.chmod(0o755)
    monkeypatch.setattr(trtexec_module, "TRTEXEC", str(trtexec))
    assert _main("build", fresh, "--precision", "int8") == 0
    argv = (tmp_path / "argv.txt").read_text()
    # TensorRT 8: the calibration-cache line first (as plan_build), served with the running release's header.
    assert "--onnx=export/model.onnx --int8 --fp16 --calib=" in argv and "--memPoolSize=workspace:1024" in argv
    assert "--minShapes=input:1x1x12x12 --optShapes=input:16x1x12x12 --maxShapes=input:64x1x12x12" in argv
    assert (tmp_path / "served.cache").read_bytes().startswith(b"TRT-8502-EntropyCalibration2\n")
    assert (fresh / "quantize" / "trt.calib.cache").read_bytes().startswith(b"TRT-8601-")  # the bundle's is untouched
    built = json.loads((fresh / "build-int8" / "manifest.json").read_text())
    assert built["config"]["built_by"] == "trtexec" and (fresh / "build-int8" / "model.int8.engine").is_file()
    assert built["parents"]["onnx"] == sha256_file(fresh / "export" / "model.onnx")
    assert _main("build", fresh, "--precision", "fp16", "--batch", "2:8:32", "--workspace", "256") == 0
    argv = (tmp_path / "argv.txt").read_text()
    assert "--minShapes=input:2x1x12x12" in argv and "--maxShapes=input:32x1x12x12" in argv
    assert "--memPoolSize=workspace:256" in argv and "--fp16" in argv
    assert _main("build", fresh, "--dla-core", "0", "--batch", "8") == 2
    assert "TensorRT's Python bindings are missing; running trtexec" in capsys.readouterr().err
    # The other settings in trtexec's spelling, and refused where the banner's release lacks them.
    assert _main("build", fresh, "--precision", "fp16", "--opt-level", "5") == 2
    assert "--opt-level needs TensorRT 8.6 or newer; this machine has 8.5" in _one_error_line(capsys)
    assert _main("build", fresh, "--precision", "fp16", "--sparsity") == 0
    assert (tmp_path / "argv.txt").read_text().split()[-1] == "--sparsity=enable"


def test_trtexec_banner_versions():
    assert trtexec_module.trtexec_release("&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # trtexec") == (8, 2)
    assert trtexec_module.trtexec_release("[TensorRT v100300]") == (10, 3)
    assert trtexec_module.trtexec_release("[TensorRT v110401]") == (11, 4)
    assert trtexec_module.trtexec_release("no banner") is None


# --- serving: Triton and DeepStream ------------------------------------------------------------------------------

def _triton_schema():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString((REPO / "tests/data/triton/model_config.desc").read_bytes()))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def test_triton_repository_parses_with_tritons_own_schema(fresh, monkeypatch):
    from google.protobuf import text_format

    install(monkeypatch, "10.3.0", cc=(8, 7), classes=4)
    assert _main("build", fresh, "--precision", "fp16", "--batch", "1:4:8") == 0
    assert _main("triton", fresh, "--name", "tiny") == 0
    model = fresh / "model_repository" / "tiny"
    assert (model / "1" / "model.plan").read_bytes() == (fresh / "build-fp16" / "model.fp16.engine").read_bytes()
    config = text_format.Parse((model / "config.pbtxt").read_text(), _triton_schema()())  # unknown field: raises
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
    (tensor,) = config.input
    assert tensor.name == "input" and list(tensor.dims) == [1, 12, 12]
    (output,) = config.output
    assert output.name == "logits" and list(output.dims) == [4] and output.label_filename == "labels.txt"
    assert (model / "labels.txt").read_text().split() == runtime.Bundle(fresh).labels()
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU


def test_triton_config_for_a_detector_serves_its_four_outputs():
    """An imported YOLO detector's engine (decode and NMS inside): four outputs, batch axis left to Triton."""
    from google.protobuf import text_format

    ios = [("images", True, "float32", (-1, 3, 96, 96), 1, 16),
           ("num_detections", False, "int32", (-1,), None, None), ("boxes", False, "float32", (-1, 100, 4), None, None),
           ("scores", False, "float32", (-1, 100), None, None), ("classes", False, "int32", (-1, 100), None, None)]
    config = text_format.Parse(runtime.triton_config("yolo_int8", ios), _triton_schema()())
    assert config.max_batch_size == 16 and list(config.input[0].dims) == [3, 96, 96]
    outputs = {tensor.name: (list(tensor.dims), tensor.data_type, tensor.label_filename) for tensor in config.output}
    int32, fp32 = 8, 11  # inference.DataType: TYPE_INT32, TYPE_FP32
    # one count per image: Triton refuses empty dims, so [1] reshaped to a scalar per sample
    assert outputs == {"num_detections": ([1], int32, ""), "boxes": ([100, 4], fp32, ""), "scores": ([100], fp32, ""),
                       "classes": ([100], int32, "")}
    count = next(tensor for tensor in config.output if tensor.name == "num_detections")
    assert count.HasField("reshape") and list(count.reshape.shape) == []


def test_triton_config_for_a_static_dla_batch_does_not_batch(monkeypatch):
    from google.protobuf import text_format

    ios = [("input", True, "float32", (-1, 3, 32, 32), 8, 8), ("logits", False, "float32", (-1, 10), None, None)]
    config = text_format.Parse(runtime.triton_config("m", ios, dla_core=1), _triton_schema()())
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [8, 3, 32, 32]
    assert not config.HasField("dynamic_batching")
    (device,) = config.instance_group[0].secondary_devices
    assert device.kind == device.KIND_NVDLA and device.device_id == 1


# Keys from the Gst-nvinfer configuration file table (DeepStream developer guide, Gst-nvinfer plugin, "Gst-nvinfer File
# Configuration Specifications"), each also a CONFIG_GROUP_INFER_* name in DeepStream 6.x's
# sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.h: [property] keys, and [class-attrs-all] keys.
NVINFER_PROPERTY_KEYS = {
    "gpu-id", "net-scale-factor", "offsets", "model-color-format", "onnx-file", "model-engine-file", "labelfile-path",
    "batch-size", "network-mode", "network-type", "process-mode", "gie-unique-id", "interval", "classifier-threshold",
    "output-blob-names", "int8-calib-file", "enable-dla", "use-dla-core", "maintain-aspect-ratio",
    "symmetric-padding", "num-detected-classes", "parse-bbox-func-name", "custom-lib-path", "cluster-mode",
    "parse-classifier-func-name"}
NVINFER_CLASS_ATTRS_KEYS = {"pre-cluster-threshold"}


def test_deepstream_config_names_the_bundle_files_and_the_normalization(fresh, monkeypatch, capsys, tmp_path):
    import configparser

    install(monkeypatch, "8.5.2", cc=(8, 7), classes=4)
    assert _main("build", fresh, "--precision", "int8", "--batch", "1:4:8") == 0
    capsys.readouterr()
    assert _main("deepstream", fresh) == 2  # the tiny run's synthetic tensors are no video frames
    assert "DeepStream feeds video frames; this model was not trained on images (tensor)" in _one_error_line(capsys)
    manifest = json.loads((fresh / "manifest.json").read_text())  # as an image run records it (mnist5k)
    manifest["dataset"]["preprocessing"] = {"kind": "image", "layout": "NCHW", "channels": 1, "size": [12, 12],
                                            "scale": 1 / 255.0, "mean": [0.1307], "std": [0.3081]}
    (fresh / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "elsewhere" / "nvinfer.txt"
    out.parent.mkdir()
    assert _main("deepstream", fresh, "--out", out) == 0
    parser = configparser.ConfigParser()
    parser.read(out)
    prop = parser["property"]
    assert set(parser.sections()) == {"property"} and set(prop) <= NVINFER_PROPERTY_KEYS
    for key in ("onnx-file", "model-engine-file", "labelfile-path", "int8-calib-file"):
        assert (out.parent / prop[key]).is_file(), key  # nvinfer resolves paths against the config's directory
    # nvinfer's classifier label file: one line per output layer, classes separated by ';'
    assert (out.parent / prop["labelfile-path"]).read_text() == ";".join(runtime.Bundle(fresh).labels()) + "\n"
    # logits reach nvinfer through the bundled parser (softmax, argmax); gst-nvinfer refuses a negative threshold
    assert 0.0 <= float(prop["classifier-threshold"]) <= 1.0 and prop["network-type"] == "1"
    assert prop["parse-classifier-func-name"] == "NvDsInferClassiferParseEdgepipe"
    assert (out.parent / prop["custom-lib-path"]).resolve() == fresh / "deepstream" / "libnvdsinfer_edgepipe.so"
    assert prop["output-blob-names"] == "logits"
    assert "build it first: make -C" in capsys.readouterr().err
    assert prop["network-mode"] == "1" and prop["model-color-format"] == "2" and prop["batch-size"] == "8"
    prep = runtime.Bundle(fresh).manifest["dataset"]["preprocessing"]
    pixel = np.array([0.0, 128.0, 255.0])
    nvinfer = float(prop["net-scale-factor"]) * (pixel - float(prop["offsets"]))
    np.testing.assert_allclose(nvinfer, (pixel * prep["scale"] - prep["mean"][0]) / prep["std"][0], rtol=1e-6)


def test_deepstream_refuses_a_classifier_it_cannot_parse_in_one_line(fresh, monkeypatch, capsys):
    from edgepipe.device import serving

    install(monkeypatch, "10.3.0", cc=(8, 7), classes=4)
    assert _main("build", fresh, "--precision", "fp16") == 0
    manifest = json.loads((fresh / "manifest.json").read_text())
    manifest["dataset"]["preprocessing"] = {"kind": "image", "layout": "NCHW", "channels": 1, "size": [12, 12],
                                            "scale": 1 / 255.0, "mean": [0.5], "std": [0.5]}
    (fresh / "manifest.json").write_text(json.dumps(manifest))
    engine_io = serving._engine_io
    monkeypatch.setattr(serving, "_engine_io", lambda path, settings: engine_io(path, settings) + [
        ("top1", False, "int32", (-1,), None, None)])
    capsys.readouterr()
    assert _main("deepstream", fresh) == 2
    assert ("the classifier parser reads one float32 or float16 logits output; this engine has logits (float32), "
            "top1 (int32)") in _one_error_line(capsys)
    # a classifier bundle made before the parser shipped: one line saying how to get one that has it
    shutil.rmtree(fresh / "deepstream")
    manifest["files"] = [entry for entry in manifest["files"] if not entry["path"].startswith("deepstream/")]
    (fresh / "manifest.json").write_text(json.dumps(manifest))
    assert _main("deepstream", fresh) == 2
    assert "carries no deepstream/ parser sources" in _one_error_line(capsys)


def test_deepstream_says_it_cannot_crop_like_the_eval_view(fresh, monkeypatch, capsys, tmp_path):
    """A model evaluated on resize-256 + centre-crop-224: nvinfer only scales, and the config says so."""
    install(monkeypatch, "10.3.0", cc=(8, 7), classes=4)
    assert _main("build", fresh, "--precision", "fp16") == 0
    manifest = json.loads((fresh / "manifest.json").read_text())
    manifest["dataset"]["preprocessing"] = {"kind": "image", "layout": "NCHW", "channels": 3, "size": [12, 12],
                                            "resize": 14, "scale": 1 / 255.0, "mean": [0.5] * 3, "std": [0.25] * 3}
    (fresh / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    out = tmp_path / "nvinfer.txt"
    assert _main("deepstream", fresh, "--out", out) == 0
    warned = capsys.readouterr().err
    assert "centre 12x12 crop of images resized to 14" in warned and "nvinfer stretches" in warned
    assert "# WARNING: this model was evaluated on the centre 12x12 crop" in out.read_text()


@pytest.fixture
def fresh_detector(tiny_detection_bundle, tmp_path) -> Path:
    copy = tmp_path / "detector-bundle"
    shutil.copytree(tiny_detection_bundle, copy)
    return copy


def test_a_detection_bundle_ships_the_parser_sources_hashed_and_says_how_to_build(fresh_detector, bundle,
                                                                                 tiny_detection_bundle):
    from edgepipe.bundles import read_bundle

    listed = {entry["path"]: entry["sha256"] for entry in runtime.Bundle(fresh_detector).manifest["files"]}
    for source in sorted((PACKAGE / "nvinfer_parser").iterdir()):
        if source.name != runtime_layout.PARSER_LIBRARY:
            assert listed[f"deepstream/{source.name}"] == sha256_file(source), source.name
    read_bundle(fresh_detector)  # the workstation's check and the device's both accept it
    runtime.Bundle(fresh_detector).verify()
    readme, name = (fresh_detector / "README.md").read_text(), tiny_detection_bundle.name  # as it was bundled
    assert f"make -C {name}/deepstream DS_ROOT=/opt/nvidia/deepstream/deepstream CUDA_VER=" in readme
    assert f"python3 {name}/edgepipe_device.py deepstream {name}" in readme
    listed = {entry["path"]: entry["sha256"] for entry in runtime.Bundle(bundle).manifest["files"]}
    parser_source = PACKAGE / "nvinfer_parser" / "nvdsinfer_edgepipe.cpp"
    assert listed["deepstream/nvdsinfer_edgepipe.cpp"] == sha256_file(parser_source)  # a classifier ships it too
    assert "NvDsInferClassiferParseEdgepipe" in (bundle / "README.md").read_text()  # its logits parser
    source = fresh_detector / "deepstream" / "nvdsinfer_edgepipe.cpp"
    source.write_text(source.read_text().replace(">= detectionParams", "> detectionParams"))
    with pytest.raises(runtime.DeviceError, match="deepstream/nvdsinfer_edgepipe.cpp differs from the file bundled"):
        runtime.Bundle(fresh_detector).verify()


def test_deepstream_config_for_a_detector_loads_the_bundled_parser(fresh_detector, monkeypatch, capsys):
    import configparser

    import onnxruntime as ort

    from edgepipe.device import serving

    install(monkeypatch, "10.3.0", cc=(8, 7))
    assert _main("build", fresh_detector, "--precision", "fp16", "--batch", "1:2:4") == 0
    capsys.readouterr()
    assert _main("deepstream", fresh_detector) == 2  # the fake engine's one output is no detector's
    assert "the engine has no output boxes, scores, classes, num_detections" in _one_error_line(capsys)

    # The engine built from this model.onnx has its outputs: the input from the engine, the outputs from the graph.
    session = ort.InferenceSession(str(fresh_detector / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = runtime.Bundle(fresh_detector).reference()[0][:2]
    values = session.run(None, {session.get_inputs()[0].name: x})
    engine_io = serving._engine_io

    def detector_io(path, settings):
        return [io for io in engine_io(path, settings) if io[1]] + [
            (o.name, False, v.dtype.name, (-1, *v.shape[1:]), None, None)
            for o, v in zip(session.get_outputs(), values, strict=True)]

    monkeypatch.setattr(serving, "_engine_io", detector_io)
    assert _main("deepstream", fresh_detector) == 0
    assert f"build it first: make -C {fresh_detector}/deepstream" in capsys.readouterr().err
    out = fresh_detector / "deepstream_nvinfer_fp16.txt"
    parser = configparser.ConfigParser()
    parser.read(out)
    assert set(parser.sections()) == {"property", "class-attrs-all"}
    prop, attrs = parser["property"], parser["class-attrs-all"]
    assert set(prop) <= NVINFER_PROPERTY_KEYS and set(attrs) <= NVINFER_CLASS_ATTRS_KEYS
    assert (prop["network-type"], prop["cluster-mode"], prop["parse-bbox-func-name"]) == (
        "0", "4", "NvDsInferParseEdgepipe")  # detector; no clustering: NMS is in the graph
    assert prop["output-blob-names"] == "boxes;scores;classes;num_detections"
    assert prop["num-detected-classes"] == "10" and prop["batch-size"] == "4" and prop["network-mode"] == "2"
    assert fresh_detector / prop["custom-lib-path"] == fresh_detector / "deepstream" / "libnvdsinfer_edgepipe.so"
    assert "classifier-threshold" not in prop and "maintain-aspect-ratio" not in prop  # stretched, not letterboxed
    assert float(attrs["pre-cluster-threshold"]) == runtime.Bundle(fresh_detector).manifest["task"]["display_score"]
    # nvinfer's detector label file: one class per line (object c is named by line c)
    labels = (fresh_detector / prop["labelfile-path"]).read_text().splitlines()
    assert labels == runtime.Bundle(fresh_detector).labels() and len(labels) == 10

    manifest = json.loads((fresh_detector / "manifest.json").read_text())  # as a YOLO folder run records it
    manifest["dataset"]["preprocessing"].update(resize_mode="letterbox", pad_value=114)
    (fresh_detector / "manifest.json").write_text(json.dumps(manifest))
    (fresh_detector / "deepstream" / "libnvdsinfer_edgepipe.so").write_bytes(b"built on the device")
    assert _main("deepstream", fresh_detector) == 0
    warned = capsys.readouterr().err
    assert "letterboxed with padding 114; nvinfer pads with 0" in warned and "build it first" not in warned
    parser.read(out)
    assert parser["property"]["maintain-aspect-ratio"] == "1" and parser["property"]["symmetric-padding"] == "1"

    # a detection bundle made before the parser shipped: one line saying how to get one that has it
    shutil.rmtree(fresh_detector / "deepstream")
    manifest["files"] = [entry for entry in manifest["files"] if not entry["path"].startswith("deepstream/")]
    (fresh_detector / "manifest.json").write_text(json.dumps(manifest))
    assert _main("deepstream", fresh_detector) == 2
    assert "carries no deepstream/ parser sources" in _one_error_line(capsys)


def test_serving_before_a_build_is_one_line(fresh, capsys):
    assert _main("triton", fresh) == 2
    assert "no engine (any precision) built" in _one_error_line(capsys)


# --- the device install the README documents ----------------------------------------------------------------------

def test_the_readme_device_install_pulls_no_torch_sklearn_or_pycuda(tmp_path):
    """Resolve the README's own device-install line with pip (dry run, nothing installed)."""
    import shlex

    line = next(line for line in (REPO / "README.md").read_text().splitlines() if "# device-install" in line)
    command = shlex.split(line.split("#", 1)[0])
    assert command[:4] == ["python3", "-m", "pip", "install"]
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                             "--report", str(report), *command[4:]], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    installs = json.loads(report.read_text())["install"]
    resolved = {item["metadata"]["name"].lower().replace("_", "-") for item in installs}
    assert {"numpy", "onnxruntime"} <= resolved
    assert not resolved & {"torch", "scikit-learn", "pycuda", "torchvision", "pydantic", "typer", "edgepipe"}, resolved


def test_a_static_batch_engine_pads_every_tail_even_after_a_split(fresh, monkeypatch):
    """DLA-style profile 8:8:8 and 21 samples: 8 + 8 + 5, the last piece padded to 8 and cut back."""
    trt = install(monkeypatch, "10.3.0", cc=(8, 7), classes=4)
    plan = runtime.plan_build(runtime.Bundle(fresh).build_files(), "fp16", 10)
    result = runtime.build_serialized_engine(trt, plan, runtime.BuildSettings("fp16", batch=(8, 8, 8)))
    (fresh / "static.engine").write_bytes(bytes(result["engine"]))
    x = np.random.default_rng(0).normal(size=(21, 1, 12, 12)).astype(np.float32)
    with runtime.Engine(fresh / "static.engine", {}) as engine:
        trt.calls.clear()
        out = engine.infer(x)["logits"]
    assert out.shape == (21, 4)
    np.testing.assert_allclose(out[:, 0], x.reshape(21, -1).sum(1), rtol=1e-5)
    shapes = [args[1] for name, args in trt.calls if name == "IExecutionContext.set_input_shape"]
    assert shapes == [(8, 1, 12, 12)] * 3


def test_triton_refuses_a_profile_that_starts_above_one():
    ios = [("input", True, "float32", (-1, 3, 8, 8), 4, 64), ("logits", False, "float32", (-1, 10), None, None)]
    with pytest.raises(runtime.DeviceError, match="profile starts at batch 4"):
        runtime.triton_config("m", ios)


def test_a_driver_too_old_for_the_runtime_is_said_not_hidden_as_no_gpu():
    class OldDriver:
        def cudaGetErrorString(self, status):  # noqa: N802
            return b"CUDA driver version is insufficient for CUDA runtime version"

        def cudaGetDeviceCount(self, count):  # noqa: N802
            return device_cuda.CUDA_ERROR_INSUFFICIENT_DRIVER

    with pytest.raises(runtime.DeviceError, match=r"cudaGetDeviceCount failed: CUDA driver version is insufficient"):
        runtime.Cudart(OldDriver()).device_count()


# --- bundles made before the runtime became a package ---------------------------------------------------------------

# The last commit whose bundles carry the runtime as flat files (edgepipe_device_runtime.py, _scoring.py, _cuda.py).
FLAT_RUNTIME_COMMIT = "bbcfca38fe5829210c71b51bb4a4f453a8204ffc"


@pytest.fixture(scope="module")
def old_bundle(bundle, tmp_path_factory) -> Path:
    """The bundle as that commit made it: the data layout is the same (this change only moved the runtime), the
    runtime is its flat files, listed and hashed in manifest.json. Their text comes from git history."""
    if subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", FLAT_RUNTIME_COMMIT + "^{commit}"],
                      capture_output=True).returncode != 0:
        pytest.skip(f"commit {FLAT_RUNTIME_COMMIT[:7]} is not in this clone (shallow): no flat runtime to ship")
    old = tmp_path_factory.mktemp("old") / "bundle"
    shutil.copytree(bundle, old)
    shutil.rmtree(old / "edgepipe_device")
    flat = {"edgepipe_device.py": "launcher.py", "edgepipe_device_runtime.py": "runtime.py",
            "edgepipe_device_scoring.py": "scoring.py", "edgepipe_device_cuda.py": "cuda.py"}
    for name, source in flat.items():
        shown = f"{FLAT_RUNTIME_COMMIT}:edgepipe/device/{source}"
        (old / name).write_bytes(subprocess.run(["git", "-C", str(REPO), "show", shown], capture_output=True,
                                                check=True).stdout)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["files"] = [entry for entry in manifest["files"] if not entry["path"].startswith("edgepipe_device")] + [
        {"path": name, "sha256": sha256_file(old / name), "size_bytes": (old / name).stat().st_size} for name in flat]
    (old / "manifest.json").write_text(json.dumps(manifest))
    return old


def test_a_bundle_made_before_the_package_evaluates_on_the_new_runtime_and_the_workstation(old_bundle, tmp_path,
                                                                                             monkeypatch, capsys):
    from edgepipe.stages.evaluate import evaluate

    bundle = tmp_path / "bundle"
    shutil.copytree(old_bundle, bundle)
    assert (bundle / "edgepipe_device_runtime.py").is_file() and not (bundle / "edgepipe_device").exists()
    # The new runtime, as a Jetson image runs it, on the old bundle: ONNX files on onnxruntime, then an engine.
    assert _main("eval", bundle, "--json", tmp_path / "device.json") in (0, 1)
    device = {row["name"]: row for row in json.loads((tmp_path / "device.json").read_text())["artifacts"]}
    full = {row["name"]: row for row in evaluate(bundle)["artifacts"]}  # the workstation's `edgepipe eval`
    assert set(device) == set(full) and len(full) >= 4
    assert all(device[name]["score"] == row["score"] for name, row in full.items())
    install(monkeypatch, "10.3.0", cc=(8, 7), classes=4)
    assert _main("build", bundle, "--precision", "fp16", "--batch", "1:4:8") == 0
    capsys.readouterr()
    assert _main("eval", bundle) in (0, 1) and "tensorrt-fp16" in capsys.readouterr().out
    # and its own flat runtime (the launcher imports edgepipe_device_runtime beside it) still runs it
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    own = subprocess.run([sys.executable, str(bundle / "edgepipe_device.py"), "eval", str(bundle)],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert own.returncode in (0, 1) and "eval on 40 bundled samples" in own.stdout, own.stderr
