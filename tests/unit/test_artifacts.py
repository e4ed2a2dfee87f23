import json

import pytest

from edgepipe.artifacts import (
    add_artifact,
    atomic_dir,
    new_manifest,
    read_manifest,
    stage_dir,
    verify_artifacts,
    write_manifest,
)
from edgepipe.errors import EdgepipeError


def test_atomic_dir_keeps_previous_artifact_on_failure(tmp_path):
    final = tmp_path / "stage"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("good")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("crash mid-stage")
    assert (final / "a.txt").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]  # no temp dirs left behind


def test_atomic_dir_replaces_on_success(tmp_path):
    final = tmp_path / "stage"
    for content in ("one", "two"):
        with atomic_dir(final) as tmp:
            (tmp / "a.txt").write_text(content)
    assert (final / "a.txt").read_text() == "two"
    assert len(list(tmp_path.iterdir())) == 1


def test_manifest_roundtrip_and_verification(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"weights")
    manifest = new_manifest("train", {"lr": 0.1}, {"dataset": "abc"})
    add_artifact(manifest, tmp_path, "model.bin", name="original", fmt="torch", precision="fp32")
    write_manifest(tmp_path, manifest)
    loaded = read_manifest(tmp_path)
    assert loaded["artifacts"][0]["size_bytes"] == 7
    assert "torch" in loaded["versions"] and loaded["inputs_key"]
    assert verify_artifacts(tmp_path, loaded)
    (tmp_path / "model.bin").write_bytes(b"tampered")
    assert not verify_artifacts(tmp_path, loaded)


def test_same_inputs_same_key_different_config_different_key():
    a = new_manifest("export", {"opset": 18}, {"model": "x"})
    b = new_manifest("export", {"opset": 18}, {"model": "x"})
    c = new_manifest("export", {"opset": 17}, {"model": "x"})
    assert a["inputs_key"] == b["inputs_key"] != c["inputs_key"]


def test_corrupt_or_missing_manifest_is_a_user_error(tmp_path):
    with pytest.raises(EdgepipeError, match="manifest not found"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(EdgepipeError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(EdgepipeError, match="not an edgepipe manifest"):
        read_manifest(tmp_path)


def test_stage_dir_accepts_run_or_stage(tmp_path):
    write_manifest(tmp_path / "train", new_manifest("train", {}))
    assert stage_dir(tmp_path, "train") == tmp_path / "train"
    assert stage_dir(tmp_path / "train", "train") == tmp_path / "train"
    with pytest.raises(EdgepipeError, match="no 'export' stage"):
        stage_dir(tmp_path, "export")
