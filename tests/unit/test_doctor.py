"""`edgepipe doctor` on this CPU-only machine, and on a fake Jetson file tree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgepipe import doctor
from edgepipe.cli import doctor as doctor_cli
from edgepipe.cli.main import user_errors

app = typer.Typer()
app.command("doctor")(user_errors(doctor_cli.command))
app.command("noop")(lambda: None)
runner = CliRunner()

REPORT_KEYS = {
    "platform",
    "gpu",
    "cuda",
    "tensorrt",
    "cudart",
    "onnxruntime",
    "onnx",
    "torch",
    "cpu",
    "power_mode",
    "target",
    "backends",
}


def test_json_report_has_every_section_and_the_cpu_fallback_runs() -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report) == REPORT_KEYS
    assert {"system", "machine", "python", "jetson_model", "l4t", "jetpack"} <= set(report["platform"])
    assert {"name", "compute_capability", "memory_mib", "driver"} <= set(report["gpu"])
    assert "CPUExecutionProvider" in report["onnxruntime"]["providers"]
    backends = {backend["backend"]: backend for backend in report["backends"]}
    assert backends["onnxruntime-cpu"]["runs"] is True
    assert report["cpu"]["cores"] >= 1


def test_tensorrt_stubs_are_not_mistaken_for_tensorrt() -> None:
    trt = doctor.probe_tensorrt()
    try:
        import tensorrt

        real = hasattr(tensorrt, "Builder")
    except ImportError:
        real = False
    assert trt["installed"] is real
    if not real:
        backend = {b["backend"]: b for b in doctor.collect()["backends"]}["tensorrt"]
        assert backend["runs"] is False and "not installed" in backend["why"]


def test_table_output_names_every_row() -> None:
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    for row in ("platform", "TensorRT", "onnxruntime", "torch", "CPU", "power mode", "onnxruntime-cpu"):
        assert row in result.output


def test_works_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    report = doctor.collect()
    assert report["torch"] == {"version": "not installed", "cuda": False}
    torch_backend = {b["backend"]: b for b in report["backends"]}["torch-cpu"]
    assert torch_backend["runs"] is False and "not needed on the device" in torch_backend["why"]


def _fake_jetson(root: Path, model: str, release: str, cpuinfo: str) -> Path:
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "proc/device-tree/model").write_text(model + "\x00")
    (root / "etc/nv_tegra_release").write_text(release)
    (root / "proc/cpuinfo").write_text(cpuinfo)
    return root


def test_fake_orin_nano_file_tree(tmp_path: Path) -> None:
    root = _fake_jetson(
        tmp_path,
        "NVIDIA Jetson Orin Nano Developer Kit",
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan 8\n",
        "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sha512 i8mm\nCPU part\t: 0xd42\n",
    )
    platform_info = doctor.probe_platform(root)
    assert platform_info["jetson_model"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert platform_info["l4t"] == "36.4.3"
    # dpkg's nvidia-jetpack version wins where present; none here, so the L4T table answers
    assert platform_info["jetpack"] == "6.2"
    assert doctor.guess_target(platform_info, {"compute_capability": None}) == "jetson-orin-nano"
    cpu = doctor.probe_cpu(root)
    assert cpu["model"] == "0xd42"
    assert cpu["flags"] == ["asimd", "asimddp", "i8mm"]


def test_cpuinfo_has_one_reader_for_x86_flags_and_arm_features(tmp_path: Path, monkeypatch) -> None:
    """The cache keys, doctor and quantize's VNNI record read /proc/cpuinfo alike (quantize once missed "Features")."""
    from edgepipe import cache
    from edgepipe.stages import quantize

    x86, arm = tmp_path / "x86", tmp_path / "arm"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512_vnni\n\n"
                   "processor\t: 1\nmodel name\t: other\n")
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU part\t: 0xd42\n")
    assert cache.read_cpuinfo(x86) == ("AMD EPYC 9R14", {"fpu", "avx2", "avx512_vnni"})
    assert cache.read_cpuinfo(arm) == ("0xd42", {"fp", "asimd", "asimddp", "i8mm"})
    assert cache.read_cpuinfo(tmp_path / "missing") == (None, set())
    monkeypatch.setattr(cache.read_cpuinfo, "__defaults__", (arm,))
    assert quantize.cpu_vnni() == {"known": True, "avx512_vnni": False, "avx_vnni": False, "vnni": False}
    assert cache.cpu_fingerprint() == "0xd42 | asimd asimddp i8mm"


def test_jetson_model_names_map_to_their_profiles() -> None:
    cases = {
        "NVIDIA Jetson Nano Developer Kit": "jetson-nano",
        "NVIDIA Jetson Xavier NX Developer Kit": "jetson-xavier-nx",
        "NVIDIA Jetson AGX Orin Developer Kit": "jetson-agx-orin",
        "NVIDIA Jetson Orin NX Engineering Reference Developer Kit": "jetson-orin-nx",
    }
    for model, target in cases.items():
        assert doctor.guess_target({"jetson_model": model}, {"compute_capability": None}) == target
    assert doctor.guess_target({"jetson_model": None}, {"compute_capability": "8.9"}) == "desktop-ada"
    assert doctor.guess_target({"jetson_model": None}, {"compute_capability": "7.5"}) is None


def test_nv_tegra_release_parsing() -> None:
    assert doctor.parse_nv_tegra_release("# R32 (release), REVISION: 7.1, GCID: 29818004") == "32.7.1"
    assert doctor.parse_nv_tegra_release("# R35 (release), REVISION: 5.0, GCID: 1") == "35.5.0"
    assert doctor.parse_nv_tegra_release("garbage") is None
