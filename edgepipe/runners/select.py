"""The one runner factory: an artifact (or a model file) → the runner that runs it here, and the fallback rule.

Who asks: eval, bench, infer, bundle (the original's reference outputs), bench's memory probe. The rule,
in one place: an engine runs on TensorRT when ``tensorrt`` imports and a CUDA GPU is visible; otherwise
``fallback=True`` runs the ONNX the engine was built from on onnxruntime and says so in ``runner.note``,
and ``fallback=False`` leaves the engine to the caller (eval and bench report it as skipped, with the
reason :func:`tensorrt_problem` gives).
"""

from __future__ import annotations

from pathlib import Path

from edgepipe.artifacts import MANIFEST, Artifact, artifact_path, read_manifest
from edgepipe.errors import EdgepipeError, MissingDependency
from edgepipe.run import FP32_ONNX, MODEL_SUFFIXES, RunLayout
from edgepipe.runners.base import Runner


def tensorrt_problem() -> str | None:
    """None when engines can run here; else why not, in words ("no CUDA GPU is visible", ...)."""
    from edgepipe.trt.loader import tensorrt_available

    ok, reason = tensorrt_available()
    return None if ok else reason


def onnx_behind_engine(engine: Path) -> Path | None:
    """The ONNX an engine was built from: its build manifest's record (inside the run), else the run's FP32 export."""
    stage = Path(engine).parent
    run = RunLayout(stage.parent)
    if (stage / MANIFEST).is_file():
        recorded = read_manifest(stage).config.get("onnx")
        if isinstance(recorded, str) and recorded:
            candidate = Path(recorded)
            try:  # a manifest is data: only a file inside this run is used
                relative = candidate.resolve().relative_to(run.root.resolve()).as_posix()
            except ValueError:
                relative = None
            if relative is not None and candidate.is_file():
                return artifact_path(run.root, relative)
    return next((d / FP32_ONNX for d in run.exports() if (d / FP32_ONNX).is_file()), None)


CPU_RUNTIMES = ("onnxruntime", "openvino")  # what runs an ONNX file on the CPU


def cpu_runtime_problem(name: str) -> str | None:
    """None when the CPU runtime ``name`` imports here; else why not: not installed, or installed but broken."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        return f"{name} is not installed here"  # (an openvino package that is there but raises is "broken" below)
    if name == "openvino":  # a package that raises on import is broken, not missing
        from edgepipe.runners.openvino import openvino_problem

        return openvino_problem()
    return None


def installed_cpu_runtimes() -> list[str]:
    """The CPU runtimes importable here, onnxruntime first (the default)."""
    return [name for name in CPU_RUNTIMES if cpu_runtime_problem(name) is None]


def _make(path: Path, fmt: str, threads: int | None, runtime: str | None = None, hint: str | None = None) -> Runner:
    if fmt == "torch":  # the original, on the CPU: the reference every artifact is compared with
        from edgepipe.runners.torch import TorchRunner

        return TorchRunner(path.parent, path.name, threads=threads)
    if fmt == "onnx" and runtime == "openvino":
        from edgepipe.runners.openvino import OvRunner

        return OvRunner(path, threads=threads, hint=hint or "LATENCY")
    if fmt == "onnx":
        if runtime not in (None, "onnxruntime"):
            raise EdgepipeError(f"unknown CPU runtime {runtime!r}; choose {' or '.join(CPU_RUNTIMES)}")
        from edgepipe.runners.onnxruntime import OrtRunner

        return OrtRunner(path, threads=threads)
    if fmt == "engine":
        from edgepipe.runners.tensorrt import TrtRunner

        return TrtRunner(path)
    raise EdgepipeError(f"{path}: unknown artifact format '{fmt}'")


def runner_for_file(path: Path, fmt: str | None = None, *, threads: int | None = None, fallback: bool = False,
                    runtime: str | None = None, hint: str | None = None) -> Runner:
    """A not-yet-opened runner for a model file (format from ``fmt`` or the suffix), with the fallback rule;
    ``runtime`` picks the CPU runtime for ONNX files (onnxruntime when left out), ``hint`` OpenVINO's
    performance hint (LATENCY when left out)."""
    path = Path(path)
    fmt = fmt or MODEL_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise EdgepipeError(f"{path} is not a model file ({', '.join(MODEL_SUFFIXES)})")
    if fmt == "engine" and fallback:
        problem = tensorrt_problem()
        if problem is not None:
            onnx = onnx_behind_engine(path)
            if onnx is None:
                raise MissingDependency(f"cannot run {path}: {problem}; and no ONNX it was built from was found "
                                        "beside it to run on onnxruntime instead")
            runner = _make(onnx, "onnx", threads, runtime, hint)
            runner.note = f"TensorRT not available here ({problem}); ran {onnx} on onnxruntime instead"
            runner.source = onnx
            return runner
    runner = _make(path, fmt, threads, runtime, hint)
    runner.source = path
    return runner


def open_runner(directory: Path, artifact: Artifact, threads: int | None = None, *, fallback: bool = False,
                runtime: str | None = None, hint: str | None = None) -> Runner:
    """A not-yet-opened runner for ``artifact`` (an entry of ``directory``'s manifest)."""
    path = artifact_path(directory, artifact.file)
    return runner_for_file(path, artifact.format, threads=threads, fallback=fallback, runtime=runtime, hint=hint)
