"""CUDA for the edgepipe device runtime through ``ctypes`` on libcudart, as Polygraphy's polygraphy/cuda/cuda.py
does: no pycuda (no aarch64 wheel), no torch. Device memory, page-locked host buffers, streams, events and the
device's name, compute capability and memory; nothing here knows TensorRT.

Part of the device runtime package (shipped whole in every bundle as ``edgepipe_device/``). Python 3.6 syntax
(JetPack 4.6; ``vermin -t=3.6-`` in the tests); imports the standard library and numpy only.
"""

import ctypes
import ctypes.util
import glob
import os
import sys

import numpy as np

from .errors import DeviceError, MissingPiece

# --- libcudart -------------------------------------------------------------------------

# cudaMemcpyKind and cudaDeviceAttr values from the CUDA runtime API headers (stable since CUDA 4).
MEMCPY_HOST_TO_DEVICE, MEMCPY_DEVICE_TO_HOST = 1, 2
CUDA_ERROR_INSUFFICIENT_DRIVER, CUDA_ERROR_NO_DEVICE = 35, 100
ATTR_COMPUTE_CAPABILITY_MAJOR, ATTR_COMPUTE_CAPABILITY_MINOR = 75, 76
_CUDART_SONAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so.10.2",
                   "libcudart.so.10.0")
_CUDA_DIRS = ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib",
              "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/aarch64-linux-gnu", "/usr/lib/x86_64-linux-gnu")


def _cudart_candidates():
    """ctypes' own search, the CUDA toolkit and JetPack directories (newest versioned toolkit first), and the
    CUDA runtime pip wheels bring (nvidia-cuda-runtime-cu12/13 under site-packages/nvidia/)."""

    candidates = []
    found = ctypes.util.find_library("cudart")
    if found:
        candidates.append(found)
    directories = list(_CUDA_DIRS) + sorted(glob.glob("/usr/local/cuda-*/lib64"), reverse=True)
    for entry in sys.path:
        directories += sorted(glob.glob(os.path.join(entry, "nvidia", "cuda_runtime", "lib")))
        directories += sorted(glob.glob(os.path.join(entry, "nvidia", "cu*", "lib")))
    for directory in directories:
        candidates.extend(os.path.join(directory, name) for name in _CUDART_SONAMES)
    candidates.extend(_CUDART_SONAMES)
    return candidates


def _load_cudart():
    """The first libcudart that loads and that the driver accepts: a CUDA 13 runtime found first on a machine
    whose driver only serves CUDA 12 answers cudaErrorInsufficientDriver (35), so the next one is tried."""
    errors, seen = [], set()
    for candidate in _cudart_candidates():
        if candidate in seen or (os.sep in candidate and not os.path.exists(candidate)):
            continue
        seen.add(candidate)
        try:
            lib = ctypes.CDLL(candidate)
        except OSError as exc:
            errors.append(str(exc))
            continue
        count = ctypes.c_int(0)
        status = int(lib.cudaGetDeviceCount(ctypes.pointer(count)))
        if status == CUDA_ERROR_INSUFFICIENT_DRIVER:
            errors.append("{}: no NVIDIA driver, or one older than this CUDA runtime (cudaError 35)".format(candidate))
            continue
        return lib
    driver_errors = [e for e in errors if "cudaError 35" in e]
    why = driver_errors[-1] if driver_errors else "no libcudart.so found on the loader path or in {}".format(
        ", ".join(_CUDA_DIRS[:2]))
    raise MissingPiece("the CUDA runtime library (libcudart) is not usable here ({}); install the CUDA toolkit "
                       "or JetPack's cuda-cudart package".format(why))


class Cudart(object):
    """The few CUDA runtime calls TensorRT inference needs: memory, copies, streams, events, device facts.

    Pointers are passed as ctypes pointers (not byref), so a test can stand a Python object in for the library.
    """

    def __init__(self, lib=None):
        self.lib = lib if lib is not None else _load_cudart()
        try:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
        except AttributeError:
            pass

    def check(self, status, what):
        status = int(status)
        if status != 0:
            try:
                text = self.lib.cudaGetErrorString(status)
                text = text.decode() if isinstance(text, bytes) else str(text)
            except Exception:  # a broken driver may not even name its error
                text = "error {}".format(status)
            raise DeviceError("CUDA {} failed: {} (cudaError {})".format(what, text, status))

    def device_count(self):
        """How many GPUs this process sees: 0 when there is none; another failure (a driver too old for this
        runtime, a broken install) is an error that says so instead of looking like "no GPU"."""
        count = ctypes.c_int(0)
        status = int(self.lib.cudaGetDeviceCount(ctypes.pointer(count)))
        if status == CUDA_ERROR_NO_DEVICE:
            return 0
        self.check(status, "cudaGetDeviceCount")
        return count.value

    def compute_capability(self, device=0):
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        self.check(self.lib.cudaDeviceGetAttribute(ctypes.pointer(major), ATTR_COMPUTE_CAPABILITY_MAJOR, device),
                   "cudaDeviceGetAttribute")
        self.check(self.lib.cudaDeviceGetAttribute(ctypes.pointer(minor), ATTR_COMPUTE_CAPABILITY_MINOR, device),
                   "cudaDeviceGetAttribute")
        return major.value, minor.value

    def name(self, device=0):
        """The GPU's name: the first field of cudaDeviceProp (char[256]) in every CUDA release, so a buffer larger
        than any release's struct is enough (CUDA 12 exports the call as cudaGetDeviceProperties_v2)."""
        buffer = ctypes.create_string_buffer(16384)
        for symbol in ("cudaGetDeviceProperties_v2", "cudaGetDeviceProperties"):
            call = getattr(self.lib, symbol, None)
            if call is not None and int(call(buffer, device)) == 0:
                return buffer.value[:256].decode(errors="replace") or None
        return None

    def mem_get_info(self):
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        self.check(self.lib.cudaMemGetInfo(ctypes.pointer(free), ctypes.pointer(total)), "cudaMemGetInfo")
        return free.value, total.value

    def malloc(self, nbytes):
        pointer = ctypes.c_void_p(0)
        self.check(self.lib.cudaMalloc(ctypes.pointer(pointer), ctypes.c_size_t(max(1, nbytes))), "cudaMalloc")
        return pointer.value or 0

    def free(self, address):
        self.check(self.lib.cudaFree(ctypes.c_void_p(address)), "cudaFree")

    def malloc_host(self, nbytes):
        """Page-locked host memory: asynchronous copies need it to overlap and to be truly async."""
        pointer = ctypes.c_void_p(0)
        self.check(self.lib.cudaMallocHost(ctypes.pointer(pointer), ctypes.c_size_t(max(1, nbytes))),
                   "cudaMallocHost")
        return pointer.value or 0

    def free_host(self, address):
        self.check(self.lib.cudaFreeHost(ctypes.c_void_p(address)), "cudaFreeHost")

    def memcpy_async(self, destination, source, nbytes, kind, stream):
        self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(destination), ctypes.c_void_p(source),
                                            ctypes.c_size_t(nbytes), kind, ctypes.c_void_p(stream)),
                   "cudaMemcpyAsync")

    def stream_create(self):
        stream = ctypes.c_void_p(0)
        self.check(self.lib.cudaStreamCreate(ctypes.pointer(stream)), "cudaStreamCreate")
        return stream.value or 0

    def stream_synchronize(self, stream):
        self.check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def stream_destroy(self, stream):
        self.check(self.lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")

    def event_create(self):
        event = ctypes.c_void_p(0)
        self.check(self.lib.cudaEventCreate(ctypes.pointer(event)), "cudaEventCreate")
        return event.value or 0

    def event_record(self, event, stream):
        self.check(self.lib.cudaEventRecord(ctypes.c_void_p(event), ctypes.c_void_p(stream)), "cudaEventRecord")

    def event_elapsed_ms(self, start, end):
        milliseconds = ctypes.c_float(0.0)
        self.check(self.lib.cudaEventElapsedTime(ctypes.pointer(milliseconds), ctypes.c_void_p(start),
                                                 ctypes.c_void_p(end)), "cudaEventElapsedTime")
        return float(milliseconds.value)

    def event_destroy(self, event):
        self.check(self.lib.cudaEventDestroy(ctypes.c_void_p(event)), "cudaEventDestroy")


class HostBuffer(object):
    """Page-locked host memory seen as a numpy array."""

    def __init__(self, cudart, nbytes):
        self.cudart, self.nbytes = cudart, max(1, int(nbytes))
        self.address = cudart.malloc_host(self.nbytes)
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.address)
        self.bytes = np.ctypeslib.as_array(raw)

    def view(self, shape, dtype):
        count = int(np.prod(shape)) if len(shape) else 1
        return self.bytes[:count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)

    def free(self):
        if self.address:
            self.bytes = None
            self.cudart.free_host(self.address)
            self.address = 0


_injected = {"cudart": None}


def set_cudart(cudart):
    """Serve ``cudart`` (a Cudart) instead of loading libcudart (tests); None restores the library."""
    _injected["cudart"] = cudart


def cudart():
    if _injected["cudart"] is not None:
        return _injected["cudart"]
    return Cudart()


def jetson_model():
    """ "NVIDIA Jetson Orin Nano Developer Kit" from the device tree, or None off a Jetson."""
    try:
        with open("/proc/device-tree/model", "rb") as handle:
            return handle.read().rstrip(b"\x00\n").decode(errors="replace") or None
    except OSError:
        return None


def cuda_device(index=0):
    """{"name", "compute_capability": (major, minor), "total_memory_mib"} of the GPU, or None without one."""
    try:
        cuda = cudart()
    except MissingPiece:
        return None
    if cuda.device_count() <= index:
        return None
    major, minor = cuda.compute_capability(index)
    _, total = cuda.mem_get_info()
    name = cuda.name(index) or jetson_model() or "CUDA device {} (sm_{}{})".format(index, major, minor)
    return {"name": name, "compute_capability": (major, minor), "total_memory_mib": int(total) >> 20}
