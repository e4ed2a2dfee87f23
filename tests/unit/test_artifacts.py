import json
import os
import stat
import subprocess
import sys

import pytest

from edgepipe.artifacts import (
    add_artifact,
    artifact_path,
    new_manifest,
    read_manifest,
    verify_artifacts,
    write_json_atomic,
    write_manifest,
)
from edgepipe.errors import EdgepipeError
from edgepipe.rundir import LOCK, atomic_dir, recover, run_lock


def _write_stage(tmp, content: str, stage: str = "train") -> None:
    (tmp / "a.txt").write_text(content)
    write_manifest(tmp, new_manifest(stage, {"content": content}))


def _left_in(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != LOCK)


def test_atomic_dir_keeps_previous_artifact_on_failure(tmp_path):
    final = tmp_path / "stage"
    with atomic_dir(final, "train") as tmp:
        _write_stage(tmp, "good")
    with pytest.raises(RuntimeError), atomic_dir(final, "train") as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("crash mid-stage")
    assert (final / "a.txt").read_text() == "good"
    assert _left_in(tmp_path) == ["stage"]  # no temp dirs left behind


def test_atomic_dir_replaces_on_success(tmp_path):
    final = tmp_path / "stage"
    for content in ("one", "two"):
        with atomic_dir(final, "train") as tmp:
            _write_stage(tmp, content)
    assert (final / "a.txt").read_text() == "two"
    assert _left_in(tmp_path) == ["stage"]


@pytest.mark.parametrize("occupant", ["user-folder", "file", "other-stage", "symlink"])
def test_atomic_dir_never_replaces_what_edgepipe_did_not_make(tmp_path, occupant):
    final = tmp_path / "out"
    if occupant == "user-folder":
        final.mkdir()
        (final / "thesis.txt").write_text("years of work")
    elif occupant == "file":
        final.write_text("notes")
    elif occupant == "other-stage":
        final.mkdir()
        write_manifest(final, new_manifest("export", {}))
    else:
        (tmp_path / "elsewhere").mkdir()
        final.symlink_to(tmp_path / "elsewhere")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(EdgepipeError, match="--out"), atomic_dir(final, "train") as tmp:
        _write_stage(tmp, "new")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_an_empty_out_directory_is_ours_to_fill(tmp_path):
    (tmp_path / "out").mkdir()
    with atomic_dir(tmp_path / "out", "train") as tmp:
        _write_stage(tmp, "new")
    assert (tmp_path / "out" / "a.txt").read_text() == "new"


def test_a_previous_artifact_stranded_by_a_kill_between_two_renames_is_restored(tmp_path):
    with atomic_dir(tmp_path / "stage", "train") as tmp:
        _write_stage(tmp, "good")
    # What a kill between "final -> .old" and "staging -> final" leaves (systems without RENAME_EXCHANGE):
    (tmp_path / "stage").rename(tmp_path / ".stage.old-1234")
    (tmp_path / ".stage.tmp-abcd").mkdir()
    recover(tmp_path)
    assert (tmp_path / "stage" / "a.txt").read_text() == "good"
    assert _left_in(tmp_path) == ["stage"]


def test_outputs_get_ordinary_permissions_and_sorted_keys(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "stage", "train") as tmp:
            _write_stage(tmp, "x")
            write_json_atomic(tmp / "report.json", {"b": 1, "a": {"d": 2, "c": 3}})
    finally:
        os.umask(old)
    stage = tmp_path / "stage"
    assert stat.S_IMODE(stage.stat().st_mode) == 0o755
    assert stat.S_IMODE((stage / "manifest.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((stage / "report.json").stat().st_mode) == 0o644
    assert (stage / "report.json").read_text() == '{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}\n'


def test_a_second_writer_of_a_run_is_refused_in_one_line(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from edgepipe.rundir import run_lock\n"
        "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(30)\n"), str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(EdgepipeError, match=f"being written by another edgepipe process \\(pid {holder.pid}\\)"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path), run_lock(tmp_path):  # free again once the holder is gone; re-entrant in one process
        pass


@pytest.mark.parametrize("file", ["../secret.txt", "/etc/hostname", "link/secret.txt", "", 7])
def test_a_manifest_cannot_name_a_file_outside_its_directory(tmp_path, file):
    (tmp_path / "secret.txt").write_text("private")
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "link").symlink_to(tmp_path)
    manifest = new_manifest("export", {}).to_json()
    manifest["artifacts"].append({"name": "x", "file": file, "format": "onnx", "precision": "fp32", "sha256": "0"})
    write_json_atomic(stage / "manifest.json", manifest)
    with pytest.raises(EdgepipeError, match="artifacts\\[0\\]"):
        read_manifest(stage)
    with pytest.raises(EdgepipeError):
        artifact_path(stage, file)


def test_manifest_roundtrip_and_verification(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"weights")
    manifest = new_manifest("train", {"lr": 0.1}, {"dataset": "abc"})
    add_artifact(manifest, tmp_path, "model.bin", name="original", fmt="torch", precision="fp32")
    write_manifest(tmp_path, manifest)
    loaded = read_manifest(tmp_path)
    assert loaded.artifacts[0].size_bytes == 7 and loaded.find_artifact(name="original").file == "model.bin"
    assert "torch" in loaded.versions and loaded.inputs_key
    assert verify_artifacts(tmp_path, loaded)
    (tmp_path / "model.bin").write_bytes(b"tampered")
    assert not verify_artifacts(tmp_path, loaded)


def test_same_inputs_same_key_different_config_different_key():
    a = new_manifest("export", {"opset": 18}, {"model": "x"})
    b = new_manifest("export", {"opset": 18}, {"model": "x"})
    c = new_manifest("export", {"opset": 17}, {"model": "x"})
    assert a.inputs_key == b.inputs_key != c.inputs_key


def test_corrupt_or_missing_manifest_is_a_user_error(tmp_path):
    with pytest.raises(EdgepipeError, match="manifest not found"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(EdgepipeError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(EdgepipeError, match="not an edgepipe manifest"):
        read_manifest(tmp_path)
