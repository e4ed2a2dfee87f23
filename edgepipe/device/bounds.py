"""Bounds on what a file declares, checked before anything is allocated: a bundle's reference.npz, an infer input
and a manifest are data from whoever made them. Arrays' shapes are read from their .npy headers (numpy.lib.format's
header readers, on the zip member's stream: the data is never decompressed) and refused before np.load allocates
them. Python 3.6 syntax, standard library and numpy only; the workstation's edgepipe.limits uses the same functions.
"""
import json
import os
import zipfile

import numpy as np

ARRAY_LIMIT_ENV = "EDGEPIPE_MAX_ARRAY_MIB"  # raises the cap below, deliberately
ARRAY_LIMIT_MIB = 4096  # no evaluation set or infer input edgepipe makes comes near this
JSON_LIMIT_BYTES = 64 << 20  # a manifest or report is kilobytes; a bigger one is not edgepipe's
MEMORY_SHARE = 0.5  # of the memory available now: what one declared allocation may take


class DeclaredTooLarge(ValueError):
    """A size a file or a flag declares is above what edgepipe will allocate for it (an unreadable header or
    archive is a plain ValueError)."""


def human_bytes(count):
    count = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return "{:.0f} {}".format(count, unit) if unit == "B" else "{:.2f} {}".format(count, unit)
        count /= 1024.0


def available_memory():
    """Bytes of memory available now (Linux's MemAvailable; None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def array_limit():
    """(bytes one declared array set may take, how to raise it): the cap (EDGEPIPE_MAX_ARRAY_MIB raises it)."""
    text = os.environ.get(ARRAY_LIMIT_ENV, "").strip()
    try:
        mib = int(text) if text else ARRAY_LIMIT_MIB
    except ValueError:
        raise DeclaredTooLarge("{}={!r} is not a whole number of MiB".format(ARRAY_LIMIT_ENV, text)) from None
    return mib << 20


def check_allocation(nbytes, what, how_to_shrink):
    """Refuse allocating ``nbytes`` for ``what`` above the cap or above MEMORY_SHARE of the memory available."""
    limit = array_limit()
    if nbytes > limit:
        raise DeclaredTooLarge("{} needs {}, above edgepipe's limit of {} ({}; or set {}={} to go past it "
                               "deliberately)".format(what, human_bytes(nbytes), human_bytes(limit), how_to_shrink,
                                                      ARRAY_LIMIT_ENV, -(-nbytes >> 20)))
    available = available_memory()
    if available is not None and nbytes > MEMORY_SHARE * available:
        raise DeclaredTooLarge("{} needs {}, more than half of the {} of memory available now ({})".format(
            what, human_bytes(nbytes), human_bytes(available), how_to_shrink))


def _npy_header(stream, name):
    """(shape, dtype) from an .npy stream's header, reading the header only."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise ValueError("npy format version {} is not one numpy.save writes for numbers".format(version))
    except (ValueError, TypeError, SyntaxError, OSError) as exc:
        raise ValueError("{}: not a readable .npy header ({})".format(name, exc)) from None
    return tuple(shape), dtype


def declared_arrays(path):
    """{name: (shape, dtype, bytes)} of an .npy file or every member of an .npz, from the headers alone."""
    def entry(shape, dtype):
        count = 1
        for side in shape:
            count *= int(side)  # Python ints: 10**12 x 784 does not wrap around
        return shape, dtype, count * dtype.itemsize

    if zipfile.is_zipfile(path):
        found = {}
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    with archive.open(info) as stream:  # decompresses lazily: only the header's bytes
                        found[info.filename[:-4] if info.filename.endswith(".npy") else info.filename] = entry(
                            *_npy_header(stream, "{} member {}".format(path, info.filename)))
        except (zipfile.BadZipFile, NotImplementedError, EOFError) as exc:  # a damaged archive, an odd compression
            raise ValueError("{}: not a readable .npz ({})".format(path, exc)) from None
        return found
    with open(path, "rb") as stream:
        return {"": entry(*_npy_header(stream, str(path)))}


def load_arrays_bounded(path, how_to_shrink):
    """np.load of an .npy or .npz (no pickle) after its headers are checked: the arrays' total declared size is
    refused above the limits before anything is allocated. An .npz comes back as a dict of its arrays."""
    arrays = declared_arrays(path)
    for name, (_, dtype, _) in arrays.items():
        if dtype.hasobject:
            raise DeclaredTooLarge("{}{} holds Python objects, not numbers".format(
                path, " member " + name if name else ""))
    total = sum(nbytes for _, _, nbytes in arrays.values())
    shapes = ", ".join("{}{} {}".format(name + " " if name else "", "x".join(str(s) for s in shape) or "scalar",
                                        dtype) for name, (shape, dtype, _) in sorted(arrays.items()))
    check_allocation(total, "{} (declaring {})".format(path, shapes[:200]), how_to_shrink)
    try:
        data = np.load(path, allow_pickle=False)
        if hasattr(data, "files"):
            with data:
                return {name: data[name] for name in data.files}
        return data
    except (zipfile.BadZipFile, EOFError) as exc:  # data cut short or corrupt after a sound header
        raise ValueError("{}: not a readable array file ({})".format(path, exc)) from None


def read_json_bounded(path, what="file"):
    """json.load of a file no larger than JSON_LIMIT_BYTES; too big, not JSON or nested too deeply is one
    DeclaredTooLarge/ValueError naming the file."""
    size = os.path.getsize(path)
    if size > JSON_LIMIT_BYTES:
        raise DeclaredTooLarge("{} {} is {}, larger than any edgepipe JSON file (limit {})".format(
            what, path, human_bytes(size), human_bytes(JSON_LIMIT_BYTES)))
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except RecursionError:
            raise DeclaredTooLarge("{} {} nests too deeply to be an edgepipe file".format(what, path)) from None
