"""The Jetson trip on real MNIST: train + export + quantize here, bundle, then eval and infer where torch is absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.recipes import REPO, write_recipe
from PIL import Image

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mnist_bundle(tmp_path_factory) -> tuple[Path, Path]:
    from edgepipe.recipe import load_recipe
    from edgepipe.stages.bundle import make_bundle
    from edgepipe.stages.export import export
    from edgepipe.stages.quantize import quantize
    from edgepipe.stages.train import train

    root = tmp_path_factory.mktemp("mnist-bundle")
    recipe = load_recipe(write_recipe(root / "mnist.yaml", model={"name": "lenet5", "params": {}},
                                      dataset={"name": "mnist5k"}, train={"epochs": 4, "lr": 0.002}))
    run = root / "run"
    train(recipe, run / "train")
    export(run / "train", run / "export", recipe.export)
    quantize(run, run / "quantize", speed=False)
    return run, make_bundle(run, "jetson-orin-nano", root / "bundle", samples=500)


def _no_torch_env(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "no-torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('PyTorch is not installed on this device')\n")
    return {**os.environ, "PYTHONPATH": str(blocker.parent), "EDGEPIPE_NO_PROGRESS": "1"}


def _edgepipe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    code = "import sys; from edgepipe.cli.main import main; sys.argv = ['edgepipe', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, cwd=REPO,
                          timeout=600)


def test_eval_on_the_device_checks_quantized_models_against_stored_references(mnist_bundle, tmp_path):
    _, bundle = mnist_bundle
    from edgepipe.bundles import load_reference

    reference = load_reference(bundle)
    original = float((reference.outputs.argmax(1) == reference.targets).mean())
    assert len(reference.targets) == 500 and original >= 0.9
    done = _edgepipe(_no_torch_env(tmp_path), "eval", str(bundle), "--json", "--max-drop", "2")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {row["name"]: row for row in report["artifacts"]}
    assert {"original", "onnx-fp32", "fp16", "int8-trt"} <= set(rows) and "int8-cpu" not in rows
    assert report["original"]["score"] == pytest.approx(original)
    assert rows["onnx-fp32"]["drop"] == pytest.approx(0.0, abs=0.2)
    assert abs(rows["fp16"]["drop"]) <= 0.5
    assert abs(rows["int8-trt"]["drop"]) <= 2.0 and rows["int8-trt"]["agreement"] >= 0.97


def test_infer_on_the_device_reads_real_digit_pngs(mnist_bundle, tmp_path):
    run, bundle = mnist_bundle
    from edgepipe.artifacts import read_manifest
    from edgepipe.data import load_stage_dataset
    from edgepipe.data.mnist import MNIST_MEAN, MNIST_STD

    test = load_stage_dataset(read_manifest(run / "train")).test  # held-out digits, normalization undone
    folder = tmp_path / "digits"
    folder.mkdir()
    for index in range(50):
        pixels = np.clip(np.round((test.x[index, 0] * MNIST_STD + MNIST_MEAN) * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    code = ("import json, sys; from pathlib import Path; from edgepipe.infer import infer; "
            "print(json.dumps(infer(Path(sys.argv[1]), [Path(sys.argv[2])], top_k=2)))")
    done = subprocess.run([sys.executable, "-c", code, str(bundle), str(folder)], env=_no_torch_env(tmp_path),
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    predicted = np.array([row["top"][0]["index"] for row in report["predictions"]])
    assert report["backend"] == "onnxruntime" and np.mean(predicted == test.y[:50]) >= 0.9
