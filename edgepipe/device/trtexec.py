"""Building with trtexec where TensorRT's Python bindings are missing: the bundle's recorded command lines
(edgepipe/trt/trtexec.py writes them), with this build's settings applied. trtexec's options per release from
samples/common/sampleOptions.cpp."""

import os
import shutil
import subprocess

from .calib_cache import CACHE_ALGORITHM, read_cache
from .common import release_of_number, say, write_bytes_atomic
from .errors import DeviceError, MissingPiece
from .layout import CALIB_CACHE, engine_file
from .settings import check_version_supports, trtexec_options

TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # where JetPack and NVIDIA's containers install it
SHAPE_KINDS = ("min", "opt", "max")


def workspace_flag(mib, release):
    """trtexec's workspace limit in MiB: --workspace=N before 8.4, --memPoolSize=workspace:N from 8.4."""
    return "--workspace={}".format(mib) if tuple(release) < (8, 4) else "--memPoolSize=workspace:{}".format(mib)


def shape_flags(input_name, sample_shape, batch):
    """--minShapes/--optShapes/--maxShapes for the batch profile (MIN, OPT, MAX) of one input."""
    dims = "x".join(str(d) for d in sample_shape)
    return ["--{}Shapes={}:{}x{}".format(kind, input_name, size, dims) for kind, size in zip(SHAPE_KINDS, batch)]


def find_trtexec():
    if os.path.isfile(TRTEXEC) and os.access(TRTEXEC, os.X_OK):
        return TRTEXEC
    return shutil.which("trtexec")


def build_with_trtexec(bundle, settings, out_dir):
    """Build with trtexec from the bundle's recorded command lines (the Python bindings are missing).

    Returns (engine path, the command record, the ONNX it built from). The batch profile and workspace are
    applied to the recorded line; DLA and timing caches need the Python path (refused in one line).
    """
    precision = settings.precision
    trtexec = find_trtexec()
    if trtexec is None:
        raise MissingPiece("neither TensorRT's Python bindings nor trtexec are here ({} or on PATH); install JetPack's "
                           "TensorRT (`sudo apt install tensorrt`)".format(TRTEXEC))
    if settings.dla_core is not None or settings.timing_cache is not None:
        raise DeviceError("--dla-core and --timing-cache need TensorRT's Python bindings (trtexec is used only "
                          "without them); install python3-libnvinfer or run the bundle's trtexec lines by hand")
    commands = [c for c in bundle.manifest.get("trtexec") or [] if c.get("precision") == precision
                and "DLA" not in c.get("how", "")]
    if not commands:
        raise DeviceError("the bundle lists no trtexec command for {}; it can build {}".format(
            precision, ", ".join(bundle.manifest.get("precisions") or [])))
    try:
        probe = subprocess.run([trtexec, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeviceError("{} does not run ({})".format(trtexec, exc)) from None
    number = banner_version_number(probe.stdout)
    if number is None:
        raise DeviceError("{} did not print its TensorRT version ('[TensorRT vNNNN]' in its --help banner); run "
                          "the bundle's trtexec lines by hand (README.md)".format(trtexec))
    release = release_of_number(number)
    check_version_supports("{}.{}".format(*release), settings)
    command = _command_for_release(commands, release)
    argv = _apply_settings(command["command"].split(), settings, release)
    argv[0] = trtexec
    engine = engine_file(precision)
    onnx = None
    for index, arg in enumerate(argv):
        if arg.startswith("--saveEngine="):
            argv[index] = "--saveEngine=" + os.path.join(out_dir, engine)
        elif arg.startswith("--onnx="):
            onnx = bundle.file(arg.split("=", 1)[1])
        elif arg.startswith("--calib="):
            # The cache's header must name this very release or TensorRT ignores it (see with_running_header).
            cache = bundle.file(arg.split("=", 1)[1])
            bundle.check_cache(cache)
            served = os.path.join(out_dir, CALIB_CACHE)
            header = "TRT-{}-{}".format(number, CACHE_ALGORITHM).encode()
            write_bytes_atomic(served, header + b"\n" + read_cache(cache).partition(b"\n")[2])
            argv[index] = "--calib=" + served
    say("build: TensorRT's Python bindings are missing; running trtexec for TensorRT {}.{} ({}): {}".format(
        release[0], release[1], command["how"], " ".join(argv)))
    result = subprocess.run(argv, cwd=bundle.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    if result.returncode != 0:
        tail = [line for line in result.stdout.splitlines() if "ERROR" in line or "Error" in line][-2:]
        raise DeviceError("trtexec failed (exit {}): {}".format(result.returncode, "; ".join(tail) or "see its log"))
    if os.path.exists(os.path.join(out_dir, CALIB_CACHE)):
        os.remove(os.path.join(out_dir, CALIB_CACHE))
    return os.path.join(out_dir, engine), command, onnx


def _apply_settings(argv, settings, release):
    """The recorded line with this build's batch profile and workspace, and its other settings in trtexec's
    spelling (settings.py)."""
    out = []
    for arg in argv:
        if arg.startswith("--minShapes="):  # the profile's three flags, from the recorded input name and dims
            name, _, dims = arg[len("--minShapes="):].rpartition(":")
            out += shape_flags(name, dims.split("x")[1:], settings.batch)
        elif arg.startswith(("--workspace=", "--memPoolSize=workspace:")):
            out.append(workspace_flag(settings.workspace_mib, release))
        elif not arg.startswith(("--optShapes=", "--maxShapes=")):
            out.append(arg)
    return out + trtexec_options(settings)


def banner_version_number(text):
    """8502 from trtexec's banner "[TensorRT v8502]" (100300 for 10.3.0), or None."""
    marker = "[TensorRT v"
    if marker not in text:
        return None
    digits = text.split(marker, 1)[1].split("]", 1)[0]
    return int(digits) if digits.isdigit() else None


def trtexec_release(text):
    """(8, 5) from trtexec's banner, or None."""
    number = banner_version_number(text)
    return None if number is None else release_of_number(number)


def _command_for_release(commands, release):
    """The recorded line for this release; on TensorRT 8 the calibration-cache line first, as plan_build does."""
    def covers(text):
        if text.startswith("11"):
            return release[0] >= 11
        if text.startswith("8.0"):
            return release < (8, 4)
        return (8, 4) <= release < (11, 0)
    matching = [c for c in commands if covers(c.get("tensorrt", ""))]
    if not matching:
        families = ", ".join(sorted(set(c.get("tensorrt", "?") for c in commands)))
        raise DeviceError("the bundle's trtexec lines are for TensorRT {}, not {}.{}; rerun `edgepipe bundle` for "
                          "this device's release".format(families, release[0], release[1]))
    if release[0] == 8:
        matching.sort(key=lambda c: "calibration cache" not in c.get("how", ""))
    return matching[0]
