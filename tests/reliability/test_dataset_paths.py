"""Dataset paths stay inside their dataset (edgepipe.data.paths.inside_dataset, used by every reader).

A COCO ``file_name`` at any depth of ``../`` (1, 3, and 10: past the filesystem root, where the old check
opened the real file), an absolute one, and a symlink out of the root in COCO, YOLO (an image, a label), an
image folder (a file, a whole class folder) and a calibration folder: one line naming the file and the root,
exit 2, nothing changed, and the outside file never opened — an audit hook on "open" (PEP 578) records every
file this process opens while the command runs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.runs import snapshot
from PIL import Image
from typer.testing import CliRunner

from edgepipe.cli.main import app

_OPENED: list[str] | None = None


def _record_opens(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_record_opens)  # permanent for the process (PEP 578); records only while _OPENED is a list


def _image(path: Path, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(path)
    return path


def _up(root: Path, depth: int, target: Path) -> str:
    """``depth`` times '../' from ``root``, then down to ``target`` (at the filesystem root '..' stays there)."""
    base = root
    for _ in range(depth):
        base = base.parent
    return "../" * depth + str(target.resolve().relative_to(base.resolve()))


class Place:
    """A case's dataset root, the private image outside it and the recipe that points at the dataset."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "data"
        self.outside = _image(tmp / "private" / "passport.png", 200)

    def coco(self, file_name: str | None = None, link: bool = False) -> list[str]:
        images = [_image(self.root / "images" / f"{i}.png", 10 * i) for i in range(4)]
        entries = [{"id": i, "file_name": path.name, "width": 12, "height": 12} for i, path in enumerate(images)]
        if link:
            (self.root / "images" / "link.png").symlink_to(self.outside)
            file_name = "link.png"
        entries.append({"id": 99, "file_name": file_name, "width": 12, "height": 12})
        notes = [{"id": i + 1, "image_id": e["id"], "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}
                 for i, e in enumerate(entries)]
        (self.root / "instances.json").write_text(json.dumps({
            "images": entries, "annotations": notes, "categories": [{"id": 1, "name": "thing"}]}))
        return self._train("coco")

    def yolo(self, what: str) -> list[str]:
        for i in range(4):
            _image(self.root / "images" / f"{i}.png", 10 * i)
            (self.root / "labels").mkdir(parents=True, exist_ok=True)
            (self.root / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        if what == "image":
            (self.root / "images" / "link.png").symlink_to(self.outside)
        else:
            secret_label = self.tmp / "private" / "label.txt"
            secret_label.write_text("0 0.5 0.5 0.3 0.3\n")
            (self.root / "labels" / "0.txt").unlink()
            (self.root / "labels" / "0.txt").symlink_to(secret_label)
            self.outside = secret_label
        (self.root / "data.yaml").write_text(yaml.safe_dump({"names": ["thing"]}))
        return self._train("yolo")

    def image_folder(self, what: str) -> list[str]:
        for label in ("cats", "dogs"):
            for i in range(6):
                _image(self.root / label / f"{i}.png", 30 * i)
        if what == "file":
            (self.root / "cats" / "link.png").symlink_to(self.outside)
        else:
            (self.root / "birds").symlink_to(self.outside.parent, target_is_directory=True)
        return self._train("imagefolder")

    def _train(self, kind: str) -> list[str]:
        detection = kind in ("coco", "yolo")
        recipe = {"name": "contained", "task": "detection" if detection else "classification",
                  "model": {"name": "centernet", "params": {"width": 8}} if detection else
                  {"name": "mlp", "params": {"hidden": [8]}},
                  "dataset": {"name": kind, "path": str(self.root), "image_size": [12, 12] if not detection
                              else [32, 32], "channels": 3, "workers": 0},
                  "train": {"epochs": 1, "batch_size": 4, "seed": 0}}
        path = self.tmp / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe))
        return ["train", str(path), "--out", str(self.tmp / "run")]


@dataclass(frozen=True)
class Outside:
    name: str
    prepare: Callable[[Place, Path], list[str]]  # (place, pristine run) -> command

    def __str__(self) -> str:
        return self.name


CASES = [
    Outside("coco-file-name-one-level-up", lambda p, run: p.coco(_up(p.root, 1, p.outside))),
    Outside("coco-file-name-three-levels-up", lambda p, run: p.coco(_up(p.root, 3, p.outside))),
    Outside("coco-file-name-ten-levels-up", lambda p, run: p.coco(_up(p.root, 10, p.outside))),
    Outside("coco-file-name-absolute", lambda p, run: p.coco(str(p.outside))),
    Outside("coco-file-name-through-a-symlink", lambda p, run: p.coco(link=True)),
    Outside("yolo-image-symlinked-out", lambda p, run: p.yolo("image")),
    Outside("yolo-label-symlinked-out", lambda p, run: p.yolo("label")),
    Outside("image-folder-file-symlinked-out", lambda p, run: p.image_folder("file")),
    Outside("image-folder-class-folder-symlinked-out", lambda p, run: p.image_folder("folder")),
    Outside("calibration-folder-file-symlinked-out", lambda p, run: (
        [_image(p.root / f"{i}.png", 20 * i) for i in range(3)], (p.root / "z.png").symlink_to(p.outside),
        ["quantize", str(run), "--calib", str(p.root), "--out", str(p.tmp / "q")])[2]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_dataset_path_outside_its_root_is_refused_and_never_opened(case: Outside, pristine_run: Path,
                                                                      tmp_path: Path):
    global _OPENED
    place = Place(tmp_path)
    args = case.prepare(place, pristine_run)
    before, run_before = snapshot(tmp_path), snapshot(pristine_run)
    _OPENED = []
    try:
        result = CliRunner().invoke(app, args)
    finally:
        opened, _OPENED = _OPENED, None
    assert opened, "the audit hook saw no open at all: it would not catch one either"
    assert str(place.outside.resolve()) not in opened, "the outside file was opened"
    lines = [line for line in result.stderr.splitlines() if line.strip().startswith("error")]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and "outside the dataset root" in lines[0], result.stderr
    assert str(place.root) in lines[0], lines[0]  # the refusal names the file and the root
    assert snapshot(tmp_path) == before and snapshot(pristine_run) == run_before


def test_a_symlink_that_stays_inside_the_dataset_is_read(tmp_path: Path):
    from edgepipe.data import load_dataset
    from edgepipe.recipe import DatasetConfig

    place = Place(tmp_path)
    place.image_folder("file")
    (place.root / "cats" / "link.png").unlink()
    (place.root / "cats" / "link.png").symlink_to(place.root / "dogs" / "0.png")  # inside: fine
    data = load_dataset(DatasetConfig(name="imagefolder", path=str(place.root), image_size=(12, 12), channels=3,
                                      workers=0))
    assert len(data.train) + len(data.val) + len(data.test) == 13
