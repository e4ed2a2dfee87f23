"""The device runtime's ctypes CUDA path against a real libcudart and GPU (no TensorRT needed).

Runs wherever a CUDA GPU is visible; elsewhere each test skips with the reason. These are the parts the
recording fake cannot prove: the C signatures (pointer widths, size_t, stream handles), pinned memory,
asynchronous copies ordered on one stream, event timing.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.device import runtime

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def cuda():
    try:
        lib = runtime.Cudart()
    except runtime.DeviceError as exc:
        pytest.skip(f"needs a CUDA GPU: {exc}")
    if lib.device_count() < 1:
        pytest.skip("needs a CUDA GPU: libcudart loads but sees no device")
    return lib


def test_device_facts(cuda):
    major, minor = cuda.compute_capability()
    free, total = cuda.mem_get_info()
    assert major >= 5 and 0 <= minor <= 9 and 0 < free <= total
    found = runtime.cuda_device()
    assert found["compute_capability"] == (major, minor) and found["total_memory_mib"] == total >> 20
    assert cuda.name() and cuda.name().isprintable()  # e.g. "NVIDIA H200", "Orin"


def test_round_trip_through_device_memory_on_one_stream(cuda):
    data = np.random.default_rng(0).normal(size=(64, 3, 32, 32)).astype(np.float32)
    host_in, host_out = runtime.HostBuffer(cuda, data.nbytes), runtime.HostBuffer(cuda, data.nbytes)
    device = cuda.malloc(data.nbytes)
    stream = cuda.stream_create()
    start, end = cuda.event_create(), cuda.event_create()
    try:
        host_in.view(data.shape, np.float32)[...] = data
        cuda.event_record(start, stream)
        cuda.memcpy_async(device, host_in.address, data.nbytes, runtime.MEMCPY_HOST_TO_DEVICE, stream)
        cuda.memcpy_async(host_out.address, device, data.nbytes, runtime.MEMCPY_DEVICE_TO_HOST, stream)
        cuda.event_record(end, stream)
        cuda.stream_synchronize(stream)  # the D2H copy is ordered after the H2D copy on the same stream
        np.testing.assert_array_equal(host_out.view(data.shape, np.float32), data)
        assert cuda.event_elapsed_ms(start, end) > 0
    finally:
        cuda.free(device)
        host_in.free()
        host_out.free()
        for event in (start, end):
            cuda.event_destroy(event)
        cuda.stream_destroy(stream)


def test_allocations_are_returned(cuda):
    before = cuda.mem_get_info()[0]
    blocks = [cuda.malloc(64 << 20) for _ in range(4)]
    during = cuda.mem_get_info()[0]
    for block in blocks:
        cuda.free(block)
    after = cuda.mem_get_info()[0]
    assert before - during >= 4 * (64 << 20) * 0.99 and abs(after - before) < (64 << 20)


def test_a_failing_call_is_one_line(cuda):
    with pytest.raises(runtime.DeviceError, match=r"CUDA cudaFree failed: .* \(cudaError \d+\)"):
        cuda.free(0xDEAD0000)
