"""Peak memory per artifact, measured in a fresh process so artifacts cannot inflate each other's numbers.

What is measured (Linux): a child process imports the backend library (torch or onnxruntime) and builds
the input batches, records its resident set size (VmRSS), resets the kernel's high-water mark
(``echo 5 > /proc/self/clear_refs``), loads the model and runs a few inferences per batch size, ascending,
resetting the mark before each size. ``peak_memory_bytes`` = VmHWM - that baseline: the model's weights,
the runtime's session/arena and the activations at that batch size, *excluding* the library import
itself. Where clear_refs cannot be written the mark is not reset and the number is an upper bound
(reported as such). On a GPU the runner's device memory is added under ``device_memory_bytes`` when it
can tell (torch: max_memory_allocated; TensorRT: the engine's device_memory_size).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.artifacts import Artifact
from edgepipe.errors import EdgepipeError

RUNS_PER_BATCH = 3
_BACKEND_IMPORTS = {"torch": ("torch", "edgepipe.checkpoint", "edgepipe.runners.torch"),
                    "onnx": ("onnxruntime", "edgepipe.runners.onnxruntime"),
                    "engine": ("edgepipe.runners.tensorrt",)}


def _status_bytes(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match[1]) * 1024 if match else 0


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _device_memory(runner: Any) -> int | None:
    engine = getattr(runner, "_engine", None)
    if engine is not None and hasattr(engine, "device_memory_size"):
        return int(engine.device_memory_size)
    torch = sys.modules.get("torch")
    if runner.device.startswith("cuda") and torch is not None and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return None


def measure_in_this_process(directory: Path, artifact: Artifact, batch_sizes: list[int],
                            threads: int | None, input_shape: tuple[int, ...],
                            runtime: str | None = None) -> dict[str, Any]:
    """The child's side: baseline, load, infer; returns peak bytes above baseline per batch size."""
    from importlib import import_module

    imports = ("openvino", "edgepipe.runners.openvino") if runtime == "openvino" else _BACKEND_IMPORTS.get(
        artifact.format, ())
    for module in imports:
        import_module(module)
    from edgepipe.runners.select import open_runner

    rng = np.random.default_rng(0)
    batches = {b: rng.standard_normal((b, *input_shape)).astype(np.float32) for b in sorted(batch_sizes)}
    baseline = _status_bytes("VmRSS")
    reset = _reset_high_water_mark()
    result: dict[str, Any] = {"baseline_rss_bytes": baseline, "high_water_mark_reset": reset, "peaks": {}}
    with open_runner(Path(directory), artifact, threads=threads, runtime=runtime) as runner:
        result["load_bytes"] = _status_bytes("VmHWM") - baseline
        for size, batch in batches.items():
            if reset:
                _reset_high_water_mark()
            for _ in range(RUNS_PER_BATCH):
                runner.infer(batch)
            result["peaks"][str(size)] = _status_bytes("VmHWM") - baseline
        result["device_memory_bytes"] = _device_memory(runner)
    return result


PROBE_TIMEOUT_S = 300  # one artifact's fresh process: imports, load and a few calls per batch size


def measure_peak_memory(directory: Path, artifact: Artifact, batch_sizes: list[int],
                        threads: int | None, input_shape: tuple[int, ...], runtime: str | None = None
                        ) -> dict[str, Any]:
    """Run ``measure_in_this_process`` in a fresh Python; returns its result, or {"error": why}."""
    if not Path("/proc/self/status").is_file():
        return {"error": "peak memory needs Linux /proc (not available on this OS)"}
    request = {"directory": str(Path(directory).resolve()), "artifact": artifact.model_dump(mode="json"),
               "batch_sizes": list(batch_sizes), "threads": threads, "input_shape": list(input_shape),
               "runtime": runtime}
    try:
        from edgepipe.child import python_module_argv

        done = subprocess.run(python_module_argv("edgepipe.bench.memory", json.dumps(request)),
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"memory probe timed out after {PROBE_TIMEOUT_S:.0f} s"}
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {"error": f"memory probe failed: {lines[-1] if lines else done.returncode}"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"error": "memory probe printed no result"}


def main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    try:
        result = measure_in_this_process(Path(request["directory"]), Artifact.model_validate(request["artifact"]),
                                         request["batch_sizes"],
                                         request["threads"], tuple(request["input_shape"]),
                                         request.get("runtime"))
    except EdgepipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
