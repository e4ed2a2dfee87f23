"""Helpers for the reliability suite: a tiny full recipe, tree snapshots, edgepipe in a child process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from edgepipe.rundir import LOCK
from helpers.recipes import REPO, write_recipe

TARGET = "jetson-orin-nano"


def tiny_pipeline_recipe(path: Path, **sections) -> Path:
    """An MLP on scikit-learn's 8x8 digits (real images, so `infer` and calibration folders apply), with
    every stage the reliability cases touch: quantize (no speed timing) and a bundle for TARGET."""
    defaults = {"target": TARGET, "quantize": {"cpu_speed_fallback": False, "fp16": True, "max_drop": 10},
                "dataset": {"name": "digits"}, "eval": {"max_accuracy_drop": 10}}
    return write_recipe(path, **{**defaults, **sections})


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content hash (symlinks by target): what "nothing damaged" compares.

    The run's lock file is left out: an empty marker that edgepipe keeps in every run it has written.
    """
    state = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.name == LOCK:
            continue
        if path.is_symlink():
            state[relative] = "link:" + os.readlink(path)
        elif path.is_file():
            state[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[relative] = "dir"
    return state


def edgepipe_process(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """`edgepipe ARGS` in a child process (what kill -9 and racing writers need: a real, separate process)."""
    code = "import sys; from edgepipe.cli.main import main; sys.argv = ['edgepipe', *sys.argv[1:]]; main()"
    environment = {**os.environ, "EDGEPIPE_NO_PROGRESS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
