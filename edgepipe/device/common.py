"""What every command of the device runtime shares: one-line output, JSON, hashing, atomic writes, versions."""

import hashlib
import os
import sys

from .bounds import DeclaredTooLarge, read_json_bounded
from .errors import DeviceError


def say(message):
    _write(sys.stderr, message)


def emit(message):
    """emit() that survives Python 3.6 in the C locale (no PEP 538 coercion): non-ASCII labels still print."""
    _write(sys.stdout, message)


def _write(stream, message):
    try:
        stream.write(message + "\n")
    except UnicodeEncodeError:
        stream.buffer.write((message + "\n").encode("utf-8"))
    stream.flush()


def read_json(path):
    """A bundle's JSON file: one DeviceError naming it when too large or nested too deeply."""
    try:
        return read_json_bounded(path)
    except DeclaredTooLarge as exc:
        raise DeviceError(str(exc)) from None


def basename(path):
    return os.path.basename(str(path))


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes_atomic(path, data):
    """Write to a temporary file beside ``path``, then rename: a killed run never leaves half a file."""
    tmp = "{}.tmp-{}".format(path, os.getpid())
    with open(tmp, "wb") as handle:
        handle.write(memoryview(data))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def version_tuple(text):
    """(10, 3, 0, 26) from "10.3.0.26"; stops after the first part with a non-numeric tail ("8.6.2-1+cuda12" ->
    (8, 6, 2), "8.6.1.post1" -> (8, 6, 1)). The one rule both sides read a version with (targets.parse_version)."""
    parts = []
    for part in str(text).split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(parts)


def tensorrt_version_number(version):
    """NV_TENSORRT_VERSION as cache headers and trtexec's banner print it: 8.6.1 -> 8601, 10.3.0 -> 100300
    (NvInferVersion.h: major*1000+minor*100+patch up to 9.x, major*10000+minor*100+patch from 10.0)."""
    parsed = version_tuple(version)
    if not parsed:
        raise DeviceError("TensorRT version {!r} is not like 8.6.1 or 10.3".format(version))
    major, minor, patch = (list(parsed) + [0, 0, 0])[:3]
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def release_of_number(number):
    """(8, 5) from 8502, (10, 3) from 100300: the inverse of tensorrt_version_number, to the minor release."""
    return (number // 10000, number // 100 % 100) if number >= 100000 else (number // 1000, number // 100 % 10)
