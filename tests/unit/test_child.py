"""edgepipe's own child processes import edgepipe, not a folder named edgepipe in the working directory."""

from __future__ import annotations

import subprocess

from edgepipe.child import python_module_argv


def test_a_folder_named_edgepipe_in_the_working_directory_is_not_imported(tmp_path):
    impostor = tmp_path / "edgepipe"
    impostor.mkdir()
    (impostor / "__init__.py").write_text("raise RuntimeError('the impostor was imported')\n")
    plain = subprocess.run([python_module_argv("x")[0], "-m", "edgepipe.defaults"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert "the impostor was imported" in plain.stderr  # what `python -m` does on its own
    ours = subprocess.run(python_module_argv("edgepipe", "--help"), cwd=tmp_path, capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    assert "the impostor was imported" not in ours.stderr and "Usage" in ours.stdout
