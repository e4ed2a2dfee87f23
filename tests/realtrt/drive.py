"""Run edgepipe's own TensorRT paths through NVIDIA's real bindings over the fake core (a subprocess).

    python drive.py device BUNDLE PRECISION OUT.json [BUILD OPTION ...]   the device runtime: build, eval (a Jetson)
    python drive.py workstation RUN PRECISION OUT.json [CONFIG JSON]     `edgepipe build` twice, then TrtRunner
    python drive.py load ENGINE - OUT.json                               open an engine with the device runtime

libcudart is the recording Python fake (tests/fakes/tensorrt_fake.py FakeCudartLib) reached through the device
runtime's real ctypes code; its "device" memory is host memory at real addresses, which the C++ core reads and
writes on enqueueV3. OUT.json gets the exit codes, the outputs and the CUDA calls.
"""

import json
import sys

from fakes.tensorrt_fake import DeviceMemory, FakeCudartLib, Recorder

import realtrt.bootstrap  # noqa: F401  (the real module as ``tensorrt``; must come first)
from edgepipe.device import cuda as device_cuda
from edgepipe.device import runtime


def install_cudart(record):
    lib = FakeCudartLib(DeviceMemory(), record, cc=(8, 7), total_mib=7620, name="NVIDIA Orin")
    device_cuda._injected["cudart"] = runtime.Cudart(lib)
    return lib


def device(bundle, precision, out, *options):
    record = Recorder()
    install_cudart(record)
    result = {"tensorrt": runtime.import_tensorrt().__version__}
    result["build"] = runtime.main(["build", bundle, "--precision", precision, *(options or ["--batch", "1:4:8"])])
    result["eval"] = runtime.main(["eval", bundle, "--json", out + ".eval.json"])
    if result["build"] == 0 and not options:  # the other commands that open the engine: once, on the default build
        import numpy as np

        sample = np.load(bundle + "/reference.npz")["x"][:3]
        np.save(out + ".input.npy", sample)
        result["infer"] = runtime.main(["infer", bundle, out + ".input.npy", "--json", out + ".infer.json"])
        result["bench"] = runtime.main(["bench", bundle, "--batch", "2", "--seconds", "0.05", "--json",
                                        out + ".bench.json"])
        result["triton"] = runtime.main(["triton", bundle, "--out", out + ".triton"])
        result["doctor"] = runtime.main(["doctor", "--json", out + ".doctor.json"])
    result["cudart"] = record.names()
    return result


def load(engine, precision, out):
    """Open an engine file with the device runtime; the error it raises, if any."""
    install_cudart(Recorder())
    try:
        runtime.Engine(engine, {}).close()
    except runtime.DeviceError as error:
        return {"error": str(error)}
    return {"error": None}


def workstation(run, precision, out, config="{}"):
    """Build twice with a timing cache (the second build reuses it), then run the engine through TrtRunner."""
    import os

    import numpy as np

    from edgepipe.recipe import BuildConfig
    from edgepipe.runners.tensorrt import TrtRunner
    from edgepipe.stages.build import build

    record = Recorder()
    install_cudart(record)
    options = dict(json.loads(config), precision=precision, batch=(1, 4, 8))
    cache = os.path.join(os.path.dirname(out), "timing.cache")
    build(run, None, BuildConfig(**options), timing_cache=cache)
    stage = build(run, None, BuildConfig(**options), timing_cache=cache, rebuild=True)
    engine = stage / f"model.{precision}.engine"
    with TrtRunner(engine) as runner:
        shape = runner.inputs[0].shape
        x = np.random.default_rng(0).normal(size=(6,) + tuple(shape[1:])).astype(np.float32)
        outputs = runner.infer(x)
        timing = runner.last_timing
    return {"tensorrt": runtime.import_tensorrt().__version__, "stage": str(stage), "engine": str(engine),
            "manifest": json.load(open(os.path.join(str(stage), "manifest.json"))),
            "inputs": x.tolist(), "outputs": {k: v.tolist() for k, v in outputs.items()},
            "gpu_compute_ms": timing.gpu_compute_ms, "cudart": record.names()}


if __name__ == "__main__":
    mode, path, precision, out = sys.argv[1:5]
    result = {"device": device, "workstation": workstation, "load": load}[mode](path, precision, out, *sys.argv[5:])
    with open(out, "w") as handle:
        json.dump(result, handle)
