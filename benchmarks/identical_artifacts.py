"""Byte-identical artifacts across a code change: one recipe run by another git ref's code and by this checkout.

    .venv/bin/python benchmarks/identical_artifacts.py [--recipe recipes/mnist-lenet5.yaml] [--ref main]
                                                       [--work DIR]

The other ref is taken with ``git archive`` (no worktree, no checkout of its own), this checkout's tracked and
untracked files are copied, and each side runs ``python -m edgepipe pipeline RECIPE`` in a fresh process whose
PYTHONPATH names only its own code, from the same directory (WORK/code) in turn: torch's ONNX exporter records the
source file of every traced call in the graph's metadata, so code run from two paths makes two ONNX files. Both share
one EDGEPIPE_CACHE_DIR, so a timing decision measured by the first run (quantize's CPU-track speed fallback) is
reused by the second: what is compared is the code's decisions, not two timings of a shared machine. Every file
a stage lists as an artifact, and every file a bundle ships, is compared by sha256; manifests and reports (which
hold times and dates) are not. Exit 1 when any file differs or is missing on one side. ``--work`` keeps both runs
(the other ref's run is reused when it is already there).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SKIPPED_SUFFIXES = (".json", ".md", ".png")  # written with times, dates and timings: not artifacts


def export_ref(ref: str | None, into: Path) -> Path:
    """The tree of ``ref`` (None: this checkout as it is, untracked files included) in ``into``, emptied first."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    if ref is None:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], check=True, capture_output=True).stdout
        for name in filter(None, listed.decode().split("\0")):
            if (REPO / name).is_file():
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, into / name)
        return into
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_pipeline(code: Path, recipe: Path, out: Path, cache: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(code), "EDGEPIPE_CACHE_DIR": str(cache)}
    print(f"[{code}] edgepipe pipeline {recipe} --out {out}", flush=True)
    subprocess.run([sys.executable, "-m", "edgepipe", "pipeline", str(recipe), "--out", str(out)], env=env,
                   cwd=code, check=False, stdout=subprocess.DEVNULL)
    if not (out / "train" / "manifest.json").is_file():
        raise SystemExit(f"the run into {out} made no train stage; see its output above")


def artifact_files(run: Path) -> dict[str, str]:
    """{path relative to the run: sha256} of every artifact and bundled file the manifests list."""
    import hashlib

    found: dict[str, str] = {}
    for manifest_path in sorted(run.rglob("manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        listed = [entry["file"] for entry in manifest.get("artifacts", [])]
        listed += [entry["path"] for entry in manifest.get("files") or []]
        for name in listed:
            path = manifest_path.parent / name
            if path.suffix in SKIPPED_SUFFIXES or not path.is_file():
                continue
            found[str(path.relative_to(run))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "mnist-lenet5.yaml")
    parser.add_argument("--ref", default="main")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="identical-"))
    recipe = args.recipe.resolve()
    cache = work / "cache"
    baseline = work / f"run-{args.ref}"
    code = work / "code"  # both sides run from here, one after the other
    if not (baseline / "report.json").is_file():
        run_pipeline(export_ref(args.ref, code), recipe, baseline, cache)
    current = work / "run-here"
    shutil.rmtree(current, ignore_errors=True)
    run_pipeline(export_ref(None, code), recipe, current, cache)
    before, after = artifact_files(baseline), artifact_files(current)
    differing = 0
    for name in sorted(set(before) | set(after)):
        same = before.get(name) == after.get(name)
        differing += not same
        print(f"{'same  ' if same else 'DIFFERS'} {name}  {before.get(name, 'missing')[:12]} "
              f"{after.get(name, 'missing')[:12]}")
    print(f"{len(before)} files of {args.ref}, {len(after)} here: {differing} differ ({work})")
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
