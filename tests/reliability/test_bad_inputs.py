"""The reliability table: bad input, hostile run directories and faults, each through the real CLI.

Every case asserts the README's promise: exit code 2, exactly one line on stderr that starts with
"error:" (no traceback), and not one byte changed anywhere under the case directory — the copy of a
pristine run and the user's own files beside it. Cases that try to run code or read outside the run also
assert that the marker file was not created and that the secret never reached any output.
"""

from __future__ import annotations

import json
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers.hostile import deep_json_bundle_manifest, huge_reference, kill_the_model, npy_declaring, rehash_bundle_file
from helpers.runs import TARGET, snapshot, tiny_pipeline_recipe
from typer.testing import CliRunner

from edgepipe.cli.main import app

SECRET = "top-secret-contents-7f3a"


class Case:
    """What one case's ``prepare`` may use: the run copy, room for the user's files, manifest edits."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = root / "run"
        self.marker = root / "code-ran.marker"
        self.secret = root / "secret.txt"
        self.secret.write_text(SECRET)

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def recipe(self, name: str = "bad.yaml", **sections) -> Path:
        return tiny_pipeline_recipe(self.root / name, **sections)

    def raw_recipe(self, text: str | bytes, name: str = "bad.yaml") -> Path:
        return self.file(name, text)

    def manifest(self, stage: str) -> dict:
        return json.loads((self.run / stage / "manifest.json").read_text())

    def set_manifest(self, stage: str, value) -> None:
        (self.run / stage / "manifest.json").write_text(json.dumps(value))

    def edit_manifest(self, stage: str, change: Callable[[dict], None]) -> None:
        manifest = self.manifest(stage)
        change(manifest)
        self.set_manifest(stage, manifest)

    def user_folder(self, name: str = "MyDocuments") -> Path:
        folder = self.root / name
        (folder / "photos").mkdir(parents=True)
        (folder / "thesis.txt").write_text("four years of work")
        (folder / "photos" / "cat.jpg").write_bytes(b"\xff\xd8\xff not really a cat")
        return folder

    def code_spec(self) -> dict:
        """A model spec that would run a shell command if anything imported and called it."""
        return {"name": "os:system", "params": {"command": f"touch {self.marker}"},
                "input_shape": [1, 8, 8], "num_classes": 10}

    def bomb_png(self, name: str) -> Path:
        """A 30000x30000 PNG of a few KB (a decompression bomb)."""
        width = height = 30000

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (len(data).to_bytes(4, "big") + kind + data
                    + zlib.crc32(kind + data).to_bytes(4, "big"))

        header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
        row = b"\x00" + b"\x00" * width
        compressor = zlib.compressobj(9)
        data = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
        return self.file(name, png)

    def image_folder(self, name: str, count: int = 2, size: int = 8) -> Path:
        from PIL import Image

        folder = self.root / name
        folder.mkdir(parents=True)
        for index in range(count):
            Image.fromarray(np.full((size, size), 40 * index, np.uint8)).save(folder / f"{index}.png")
        return folder


@dataclass(frozen=True)
class BadInput:
    name: str
    prepare: Callable[[Case], list[str]]
    expected: str  # a fragment of the one error line

    def __str__(self) -> str:
        return self.name


def _rm(path: Path) -> None:
    path.unlink()


def _pickle_that_runs_code(case: Case) -> bytes:
    class RunsCode:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {case.marker}",))

    return pickle.dumps({"model": RunsCode()})


def _pickled_npz(path: Path) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, x=np.array([object()], dtype=object))


def _external_data_outside(case: Case) -> None:
    """Re-save export/model.onnx with its weights as external data in '../../secret.txt'."""
    import onnx

    path = case.run / "export" / "model.onnx"
    model = onnx.load(str(path))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../secret.txt"
    path.write_bytes(model.SerializeToString())


def _symlink_cache_outside(case: Case) -> None:
    cache = case.run / "quantize" / "trt.calib.cache"
    cache.unlink()
    cache.symlink_to(case.secret)


def _bundle(case: Case) -> str:
    return str(case.run / f"bundle-{TARGET}")


def _npz_member(case: Case, name: str, data: bytes) -> None:
    """Rewrite one member of the bundle's reference.npz (the others kept), its hash updated in the manifest."""
    import zipfile

    bundle = case.run / f"bundle-{TARGET}"
    with zipfile.ZipFile(bundle / "reference.npz") as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members[name] = data
    with zipfile.ZipFile(bundle / "reference.npz", "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    rehash_bundle_file(bundle, "reference.npz")


def _sparse(path: Path, size: int) -> None:
    """``path`` grown to ``size`` bytes without using the disk (a sparse file of zeros after its JSON)."""
    with open(path, "r+b") as handle:
        handle.truncate(size)


CASES = [
    # --- code execution from a run directory (manifests are data) -------------------------------------------
    BadInput("manifest-os-system-eval", lambda c: (c.edit_manifest("train", lambda m: m.update(model=c.code_spec())),
                                                   ["eval", str(c.run)])[1], "--trust-code"),
    BadInput("manifest-os-system-export", lambda c: (c.edit_manifest("train", lambda m: m.update(model=c.code_spec())),
                                                     ["export", str(c.run)])[1], "os:system"),
    BadInput("manifest-os-system-prune", lambda c: (c.edit_manifest("train", lambda m: m.update(model=c.code_spec())),
                                                    ["prune", str(c.run), "--ratio", "0.5"])[1], "os:system"),
    BadInput("manifest-os-system-bundle", lambda c: (c.edit_manifest("train", lambda m: m.update(model=c.code_spec())),
                                                     ["bundle", str(c.run), "--target", TARGET, "--out",
                                                      str(c.root / "b")])[1], "os:system"),
    BadInput("manifest-os-system-bench", lambda c: (c.edit_manifest("train", lambda m: m.update(model=c.code_spec())),
                                                    ["bench", str(c.run / "train"), "--no-memory", "--iters", "1",
                                                     "--repeats", "1", "--seconds", "0.01"])[1], "os:system"),
    BadInput("manifest-rebuild-function", lambda c: (c.edit_manifest("train", lambda m: m["model"].update(
        rebuild={"function": "os:system", "command": f"touch {c.marker}"})), ["eval", str(c.run)])[1], "os:system"),
    BadInput("manifest-rebuild-function-export", lambda c: (c.edit_manifest("train", lambda m: m["model"].update(
        rebuild={"function": "subprocess:getoutput"})), ["export", str(c.run)])[1], "subprocess:getoutput"),
    BadInput("pickle-checkpoint-eval", lambda c: (c.file("run/train/model.pt", _pickle_that_runs_code(c)),
                                                  ["eval", str(c.run)])[1], "not a readable edgepipe checkpoint"),
    BadInput("pickle-checkpoint-export", lambda c: (c.file("run/train/model.pt", _pickle_that_runs_code(c)),
                                                    ["export", str(c.run)])[1], "not a readable edgepipe checkpoint"),
    BadInput("pickle-reference-npz", lambda c: (_pickled_npz(c.run / f"bundle-{TARGET}" / "reference.npz"),
                                                ["eval", _bundle(c)])[1], "differs from the file bundled"),
    # --- reading or shipping files from outside the run -----------------------------------------------------
    BadInput("artifact-parent-path-eval", lambda c: (c.edit_manifest("export", lambda m: m["artifacts"][0].update(
        file="../../secret.txt")), ["eval", str(c.run)])[1], "points outside"),
    BadInput("artifact-absolute-path-eval", lambda c: (c.edit_manifest("export", lambda m: m["artifacts"][0].update(
        file=str(c.secret))), ["eval", str(c.run)])[1], "not a path inside"),
    BadInput("artifact-parent-path-bundle", lambda c: (c.edit_manifest("quantize", lambda m: m["artifacts"][0].update(
        file="../../secret.txt")), ["bundle", str(c.run), "--target", TARGET, "--out", str(c.root / "b")])[1],
        "points outside"),
    BadInput("artifact-parent-path-bench", lambda c: (c.edit_manifest("export", lambda m: m["artifacts"][0].update(
        file="../../secret.txt")), ["bench", str(c.run), "--no-memory", "--iters", "1", "--repeats", "1"])[1],
        "points outside"),
    BadInput("symlinked-calibration-cache-bundle", lambda c: (_symlink_cache_outside(c), [
        "bundle", str(c.run), "--target", TARGET, "--out", str(c.root / "b")])[1], "points outside"),
    BadInput("tampered-quantized-onnx-bundle", lambda c: (c.file("run/quantize/model.fp16.onnx", b"changed"), [
        "bundle", str(c.run), "--target", TARGET, "--out", str(c.root / "b")])[1], "differs from what its stage"),
    BadInput("bundle-file-entry-outside", lambda c: (c.edit_manifest(f"bundle-{TARGET}", lambda m: m["files"][0].update(
        path="../../secret.txt")), ["eval", _bundle(c)])[1], "points outside"),
    BadInput("bundle-missing-file", lambda c: (_rm(c.run / f"bundle-{TARGET}" / "quantize" / "model.fp16.onnx"),
                                               ["eval", _bundle(c)])[1], "is missing quantize/model.fp16.onnx"),
    BadInput("onnx-external-data-outside", lambda c: (_external_data_outside(c), ["eval", str(c.run)])[1],
             "model.onnx"),
    BadInput("qat-source-dir-elsewhere", lambda c: (c.edit_manifest("export", lambda m: m.update(
        source={"stage": "train", "dir": str(c.root / "elsewhere" / "nothing")})),
        ["quantize", str(c.run), "--qat", "--out", str(c.root / "q")])[1], "--qat needs the PyTorch model"),
    # --- never deleting what edgepipe did not make ----------------------------------------------------------
    BadInput("export-out-user-folder", lambda c: ["export", str(c.run), "--out", str(c.user_folder())],
             "is not an edgepipe 'export' directory"),
    BadInput("quantize-out-user-file", lambda c: ["quantize", str(c.run), "--out", str(c.file("notes.txt", "x"))],
             "is a file"),
    BadInput("prune-out-user-folder", lambda c: ["prune", str(c.run), "--ratio", "0.5", "--out",
                                                 str(c.user_folder())], "is not an edgepipe 'prune' directory"),
    BadInput("prune-out-other-stage", lambda c: ["prune", str(c.run), "--ratio", "0.5", "--out", str(c.run / "export")],
             "is not an edgepipe 'prune' directory"),
    BadInput("bundle-out-user-folder", lambda c: ["bundle", str(c.run), "--target", TARGET, "--out",
                                                  str(c.user_folder())], "is not an edgepipe 'bundle' directory"),
    BadInput("bundle-out-run-itself", lambda c: ["bundle", str(c.run), "--target", TARGET, "--out", str(c.run)],
             "run directory itself"),
    BadInput("pipeline-out-user-folder", lambda c: ["pipeline", str(c.recipe("ok.yaml")), "--out",
                                                    str(c.user_folder())], "is not an edgepipe run directory"),
    BadInput("pipeline-out-file", lambda c: ["pipeline", str(c.recipe("ok.yaml")), "--out",
                                             str(c.file("notes.txt", "x"))], "is a file"),
    BadInput("train-out-under-a-file", lambda c: ["train", str(c.recipe("ok.yaml")), "--out",
                                                  str(c.file("notes.txt", "x"))], "notes.txt"),
    BadInput("export-out-read-only-filesystem", lambda c: ["export", str(c.run), "--out", "/proc/edgepipe/export"],
             "/proc"),
    BadInput("bundle-out-read-only-filesystem", lambda c: ["bundle", str(c.run), "--target", TARGET,
                                                           "--out", "/proc/edgepipe/bundle"], "/proc"),
    BadInput("pipeline-out-read-only-filesystem", lambda c: ["pipeline", str(c.recipe("ok.yaml")), "--out",
                                                             "/proc/edgepipe/run"], "/proc"),
    # --- a refused recipe leaves the run it was pointed at untouched ----------------------------------------
    BadInput("pipeline-unknown-model", lambda c: ["pipeline", str(c.recipe(model={"name": "resnet9000"})), "--out",
                                                  str(c.run)], "unknown model 'resnet9000'"),
    BadInput("pipeline-bad-model-params", lambda c: ["pipeline", str(c.recipe(model={"name": "mlp", "params": {
        "hiddn": [8]}})), "--out", str(c.run)], "model.params"),
    BadInput("pipeline-missing-dataset-path", lambda c: ["pipeline", str(c.recipe(dataset={
        "name": "imagefolder", "path": str(c.root / "no-such-folder")})), "--out", str(c.run)], "dataset.path"),
    BadInput("pipeline-unknown-target", lambda c: ["pipeline", str(c.recipe(target="jetson-nanoo")), "--out",
                                                   str(c.run)], "jetson-nanoo"),
    BadInput("pipeline-missing-calibration", lambda c: ["pipeline", str(c.recipe(quantize={
        "calibration": "calibration/nope.yaml"})), "--out", str(c.run)], "calibration set"),
    BadInput("pipeline-calibration-on-test", lambda c: ["pipeline", str(c.recipe(quantize={"calibration": str(
        c.file("calib.yaml", "split: test\nsamples: 8\n"))})), "--out", str(c.run)], "never on test"),
    BadInput("pipeline-callable-not-importable", lambda c: ["pipeline", str(c.recipe(model={
        "name": "no_such_package.models:net"})), "--out", str(c.run)], "cannot import module"),
    BadInput("pipeline-callable-broken-package", lambda c: ["pipeline", str(c.recipe(model={
        "name": "broken_user_package:net"})), "--out", str(c.run)], "importing 'broken_user_package' failed"),
    BadInput("pipeline-init-from-missing", lambda c: ["pipeline", str(c.recipe(train={
        "init_from": str(c.root / "nope")})), "--out", str(c.run)], "does not exist"),
    BadInput("pipeline-2-4-with-steps", lambda c: ["pipeline", str(c.recipe(prune={"method": "2:4", "steps": 2})),
                                                   "--out", str(c.run)], "one step"),
    BadInput("pipeline-image-bomb-in-dataset", lambda c: (c.image_folder("data/a"), c.image_folder("data/b"),
                                                          c.bomb_png("data/a/bomb.png"),
                                                          ["pipeline", str(c.recipe(dataset={
                                                              "name": "imagefolder", "path": str(c.root / "data"),
                                                              "image_size": [8, 8], "channels": 1})),
                                                           "--out", str(c.run)])[3], "too large to decode"),
    # --- recipes that are not recipes ------------------------------------------------------------------------
    BadInput("recipe-random-bytes", lambda c: ["pipeline", str(c.raw_recipe(bytes(range(256)) * 4)), "--out",
                                               str(c.run)], "not a text file"),
    BadInput("recipe-a-list", lambda c: ["pipeline", str(c.raw_recipe("- a\n- b\n")), "--out", str(c.run)],
             "must be a YAML mapping"),
    BadInput("recipe-empty", lambda c: ["pipeline", str(c.raw_recipe("")), "--out", str(c.run)],
             "must be a YAML mapping"),
    BadInput("recipe-invalid-yaml", lambda c: ["pipeline", str(c.raw_recipe("name: [unclosed\n")), "--out",
                                               str(c.run)], "not valid YAML"),
    BadInput("recipe-unknown-key", lambda c: ["pipeline", str(c.recipe(train={"epohcs": 3})), "--out", str(c.run)],
             "unknown key 'train.epohcs'"),
    BadInput("recipe-seed-too-large", lambda c: ["pipeline", str(c.recipe(train={"seed": 2**32})), "--out",
                                                 str(c.run)], "train.seed"),
    BadInput("recipe-split-seed-too-large", lambda c: ["pipeline", str(c.recipe(dataset={
        "name": "synthetic", "split_seed": 2**40})), "--out", str(c.run)], "dataset.split_seed"),
    BadInput("recipe-lr-inf", lambda c: ["pipeline", str(c.raw_recipe(
        c.recipe("base.yaml").read_text().replace("lr: 0.01", "lr: .inf"))), "--out", str(c.run)], "train.lr"),
    BadInput("recipe-lr-nan", lambda c: ["pipeline", str(c.raw_recipe(
        c.recipe("base.yaml").read_text().replace("lr: 0.01", "lr: .nan"))), "--out", str(c.run)], "train.lr"),
    BadInput("recipe-zero-epochs", lambda c: ["pipeline", str(c.recipe(train={"epochs": 0})), "--out", str(c.run)],
             "train.epochs"),
    BadInput("recipe-is-a-directory", lambda c: ["pipeline", str(c.root), "--out", str(c.run)], "recipe not found"),
    BadInput("recipe-missing", lambda c: ["pipeline", str(c.root / "nope.yaml"), "--out", str(c.run)],
             "recipe not found"),
    BadInput("recipe-deep-nesting", lambda c: ["pipeline", str(c.raw_recipe("a: " + "[" * 5000 + "]" * 5000)),
                                               "--out", str(c.run)], "recipe"),
    # --- damaged or hand-made manifests and checkpoints -----------------------------------------------------
    BadInput("empty-checkpoint-bundle", lambda c: (c.file("run/train/model.pt", b""), [
        "bundle", str(c.run), "--target", TARGET, "--out", str(c.root / "b")])[1],
        "not a readable edgepipe checkpoint"),
    BadInput("empty-checkpoint-eval", lambda c: (c.file("run/train/model.pt", b""), ["eval", str(c.run)])[1],
             "not a readable edgepipe checkpoint"),
    BadInput("checkpoint-holds-a-list", lambda c: (__import__("torch").save([1, 2], c.run / "train" / "model.pt"),
                                                   ["export", str(c.run)])[1], "not an edgepipe checkpoint"),
    BadInput("export-manifest-only-stage-quantize", lambda c: (c.set_manifest("export", {"stage": "export"}),
                                                               ["quantize", str(c.run), "--out", str(c.root / "q")])[1],
             "lists no ONNX model"),
    BadInput("train-manifest-only-stage-export", lambda c: (c.set_manifest("train", {"stage": "train"}),
                                                            ["export", str(c.run), "--out", str(c.root / "e")])[1],
             "no PyTorch model"),
    BadInput("manifest-not-json", lambda c: (c.file("run/export/manifest.json", "{nope"), ["eval", str(c.run)])[1],
             "not valid JSON"),
    BadInput("manifest-a-list", lambda c: (c.set_manifest("export", [1, 2]), ["eval", str(c.run)])[1],
             "not an edgepipe manifest"),
    BadInput("manifest-artifact-without-sha", lambda c: (c.edit_manifest("export", lambda m: m["artifacts"][0].pop(
        "sha256")), ["eval", str(c.run)])[1], "no 'sha256'"),
    BadInput("manifest-artifacts-not-a-list", lambda c: (c.edit_manifest("quantize", lambda m: m.update(
        artifacts={"a": 1})), ["eval", str(c.run)])[1], "'artifacts' must be a list"),
    BadInput("manifest-model-spec-garbage", lambda c: (c.edit_manifest("train", lambda m: m.update(
        model={"name": "mlp"})), ["export", str(c.run), "--out", str(c.root / "e")])[1], "model spec"),
    BadInput("manifest-binary-garbage", lambda c: (c.file("run/train/manifest.json", bytes(range(256))),
                                                   ["export", str(c.run)])[1], "not valid JSON"),
    # --- images that are not images ---------------------------------------------------------------------------
    BadInput("infer-decompression-bomb", lambda c: ["infer", str(c.run), str(c.bomb_png("bomb.png"))],
             "too large to decode"),
    BadInput("infer-not-an-image", lambda c: ["infer", str(c.run), str(c.file("fake.png", b"not an image"))],
             "not a readable image"),
    BadInput("infer-missing-image", lambda c: ["infer", str(c.run), str(c.root / "nope.png")], "nope.png"),
    BadInput("calibration-folder-bomb", lambda c: (c.image_folder("calib"), c.bomb_png("calib/bomb.png"),
                                                   ["quantize", str(c.run), "--calib", str(c.root / "calib"),
                                                    "--out", str(c.root / "q")])[2], "too large to decode"),
    BadInput("calibration-folder-empty", lambda c: ((c.root / "calib").mkdir(), [
        "quantize", str(c.run), "--calib", str(c.root / "calib"), "--out", str(c.root / "q")])[1], "holds no images"),
    # --- option values ---------------------------------------------------------------------------------------
    BadInput("bench-seconds-inf", lambda c: ["bench", str(c.run), "--seconds", "inf"], "--seconds"),
    BadInput("bench-seconds-nan", lambda c: ["bench", str(c.run), "--seconds", "nan"], "--seconds"),
    BadInput("bench-iters-zero", lambda c: ["bench", str(c.run), "--iters", "0"], "--iters"),
    BadInput("bench-threads-zero", lambda c: ["bench", str(c.run), "--threads", "0"], "--threads"),
    BadInput("bench-batch-zero", lambda c: ["bench", str(c.run), "--batch", "0"], "positive"),
    BadInput("bench-batch-words", lambda c: ["bench", str(c.run), "--batch", "one"], "comma-separated"),
    BadInput("bench-unknown-backend", lambda c: ["bench", str(c.run), "--backend", "cuda-magic"], "--backend"),
    BadInput("eval-max-drop-negative", lambda c: ["eval", str(c.run), "--max-drop", "-1"], "--max-drop"),
    BadInput("eval-max-drop-nan", lambda c: ["eval", str(c.run), "--max-drop", "nan"], "--max-drop"),
    BadInput("eval-not-a-run", lambda c: ["eval", str(c.user_folder())], "MyDocuments"),
    BadInput("eval-missing-run", lambda c: ["eval", str(c.root / "nope")], "does not exist"),
    BadInput("bundle-samples-zero", lambda c: ["bundle", str(c.run), "--target", TARGET, "--out", str(c.root / "b"),
                                               "--samples", "0"], "--samples"),
    BadInput("bundle-unknown-target", lambda c: ["bundle", str(c.run), "--target", "jetson-nanoo", "--out",
                                                 str(c.root / "b")], "known targets"),
    BadInput("bundle-of-a-bundle", lambda c: ["bundle", _bundle(c), "--target", TARGET, "--out", str(c.root / "b")],
             "already a deploy bundle"),
    BadInput("export-opset-out-of-range", lambda c: ["export", str(c.run), "--opset", "99"], "--opset"),
    BadInput("export-unknown-exporter", lambda c: ["export", str(c.run), "--exporter", "magic"], "--exporter"),
    BadInput("prune-ratio-above-one", lambda c: ["prune", str(c.run), "--ratio", "1.5"], "ratio"),
    BadInput("prune-target-macs-inf", lambda c: ["prune", str(c.run), "--target-macs", "inf"], "--target-macs"),
    BadInput("quantize-unknown-method", lambda c: ["quantize", str(c.run), "--method", "kl"], "--method"),
    BadInput("quantize-percentile-nan", lambda c: ["quantize", str(c.run), "--percentile", "nan"], "--percentile"),
    BadInput("train-epochs-zero", lambda c: ["train", str(c.recipe("ok.yaml")), "--out", str(c.root / "r"),
                                             "--epochs", "0"], "--epochs"),
    BadInput("check-not-onnx", lambda c: ["check", str(c.file("x.onnx", b"garbage")), "--target", TARGET], "x.onnx"),
    BadInput("check-unknown-target", lambda c: ["check", str(c.run / "export" / "model.onnx"), "--target", "gpu9000"],
             "known targets"),
    BadInput("build-unknown-target", lambda c: ["build", str(c.run), "--target", "gpu9000"], "gpu9000"),
    # --- sizes a flag or a file declares (edgepipe.limits); the child-process RSS floors: test_bounds.py ---------
    BadInput("bench-batch-above-limit", lambda c: ["bench", str(c.run), "--batch", "1000000"], "EDGEPIPE_MAX_BATCH"),
    BadInput("recipe-eval-batch-absurd", lambda c: ["pipeline", str(c.recipe(eval={"batch_size": 10**8})), "--out",
                                                    str(c.run)], "eval.batch_size"),
    BadInput("recipe-deploy-batch-absurd", lambda c: ["pipeline", str(c.recipe(bench={"deploy_batch": 10**8})),
                                                      "--out", str(c.run)], "bench.deploy_batch"),
    BadInput("eval-bundle-reference-declares-1e12", lambda c: (huge_reference(c.run / f"bundle-{TARGET}"),
                                                               ["eval", _bundle(c)])[1], "EDGEPIPE_MAX_ARRAY_MIB"),
    BadInput("eval-bundle-reference-object-array", lambda c: (
        _npz_member(c, "x.npy", npy_declaring((3,), object)), ["eval", _bundle(c)])[1], "holds Python objects"),
    BadInput("eval-bundle-reference-garbage-header", lambda c: (
        _npz_member(c, "x.npy", b"\x93NUMPY\x01\x00garbage"), ["eval", _bundle(c)])[1], "not a readable .npy header"),
    BadInput("manifest-larger-than-any-edgepipe-json", lambda c: (
        _sparse(c.run / "export" / "manifest.json", 65 << 20), ["eval", str(c.run)])[1], "larger than any edgepipe"),
    BadInput("bundle-manifest-nests-too-deeply", lambda c: (deep_json_bundle_manifest(c.run / f"bundle-{TARGET}"),
                                                            ["eval", _bundle(c)])[1],
             f"bundle-{TARGET}/manifest.json nests too deeply"),
    # --- a dead model (outputs the same for every input) is refused by every stage that would build on it --------
    BadInput("prune-a-dead-model", lambda c: (kill_the_model(c.run), ["prune", str(c.run), "--ratio", "0.5", "--out",
                                                                      str(c.root / "p")])[1], "nothing was pruned"),
    BadInput("export-a-dead-model", lambda c: (kill_the_model(c.run), ["export", str(c.run), "--out",
                                                                       str(c.root / "e")])[1], "nothing was exported"),
    BadInput("unknown-command", lambda c: ["deploy", str(c.run)], "No such command"),
    BadInput("unknown-option", lambda c: ["eval", str(c.run), "--fast"], "--fast"),
]


def test_the_table_is_at_least_sixty_cases():
    assert len(CASES) >= 60 and len({case.name for case in CASES}) == len(CASES)


@pytest.fixture
def broken_user_package(tmp_path, monkeypatch):
    """A user package that fails while importing for a reason other than a missing module."""
    package = tmp_path / "site"
    package.mkdir()
    (package / "broken_user_package.py").write_text("raise OSError('libcudart.so.12: cannot open shared object')\n")
    monkeypatch.syspath_prepend(str(package))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_is_one_line_exit_2_and_damages_nothing(case: BadInput, case_dir: Path, broken_user_package):
    context = Case(case_dir)
    args = case.prepare(context)
    before = snapshot(case_dir)
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.expected in lines[0], lines[0]
    assert snapshot(case_dir) == before, "files changed on disk"
    assert not context.marker.exists(), "code named by a file ran"
    for path in case_dir.rglob("*"):
        if path.is_file() and path != context.secret and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), f"{path} holds the secret"
