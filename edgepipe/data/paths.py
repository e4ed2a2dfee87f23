"""Dataset paths stay inside their dataset: the one check every reader of image folders, COCO and YOLO annotations
and calibration folders makes before it opens a file.

An annotations file or a folder someone hands you is data: a COCO ``file_name`` of ten ``../`` or a symlink in a
class folder must not read a file from elsewhere on the machine (a test split's images are copied into the
bundle's reference set, so such a file would be shipped).
"""

from __future__ import annotations

from pathlib import Path

from edgepipe.errors import EdgepipeError


def inside_dataset(path: Path, root: Path, what: str = "dataset file") -> Path:
    """``path`` when, resolved (every symlink followed, at any depth of ``..``), it lies under ``root`` resolved;
    else one line naming the file and the root. Nothing is opened: resolving only reads directory entries."""
    path, root = Path(path), Path(root)
    try:
        resolved_root = root.resolve()
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte in a name
        raise EdgepipeError(f"{what} {path} cannot be resolved inside the dataset root {root} ({exc})") from None
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise EdgepipeError(f"{what} {path} resolves to {resolved}, outside the dataset root {root}; refusing to "
                            "read it (copy the file into the dataset instead of linking or pointing to it)")
    return path


def files_inside(files: list[Path], root: Path, what: str = "dataset file") -> list[Path]:
    """Every one of ``files`` checked with :func:`inside_dataset`."""
    return [inside_dataset(file, root, what) for file in files]
