"""trtexec command lines for the files a bundle ships: the engine builds `edgepipe build` makes, without Python.

trtexec ships with every JetPack (/usr/src/tensorrt/bin/trtexec) and every TensorRT; a device whose Python
bindings are missing or broken can still build from a bundle. The options follow trtexec's own help per
release (samples/common/sampleOptions.cpp): `--workspace=N` (MiB) before 8.4, `--memPoolSize=workspace:N`
(MiB) from 8.4; `--fp16`/`--int8` builder flags on 8.x/10.x, `--stronglyTyped` on 11 (the flags are gone);
`--calib=FILE` serves an implicit-INT8 calibration cache (8.x/10.x); `--useDLACore=N --allowGPUFallback`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgepipe.device.trtexec import TRTEXEC, shape_flags, workspace_flag  # the device spells them too
from edgepipe.run import CALIB_CACHE, EXPORT, FP16_ONNX, FP32_ONNX, INT8_TRT_ONNX, QUANTIZE, engine_file
from edgepipe.targets import parse_version


@dataclass(frozen=True)
class TrtexecCommand:
    precision: str
    tensorrt: str  # the releases it is for, e.g. "8.4–10.x"
    how: str  # one line: which graph and INT8 mode
    command: str

    def to_json(self) -> dict[str, str]:
        return {"precision": self.precision, "tensorrt": self.tensorrt, "how": self.how, "command": self.command}


@dataclass(frozen=True)
class BuildInput:
    """The graph's input as the engine's optimization profile shapes it."""

    name: str
    sample_shape: tuple[int, ...]
    batch: tuple[int, int, int]  # min, opt, max


@dataclass(frozen=True)
class DeviceFacts:
    """What the target device's profile says about building there."""

    tensorrt_versions: list[str]
    workspace_mib: int
    dla_cores: int = 0


def _shapes(input_name: str, sample_shape: tuple[int, ...], batch: tuple[int, int, int]) -> str:
    return " ".join(shape_flags(input_name, sample_shape, batch))


def trtexec_commands(shipped: set[str], precisions: list[str], model_input: BuildInput, device: DeviceFacts
                     ) -> list[TrtexecCommand]:
    """Command lines per precision the bundle can build and per TensorRT family among the device's releases.

    ``shipped`` holds bundle-relative paths ("export/model.onnx", "quantize/trt.calib.cache", ...).
    """
    input_name, sample_shape, batch = model_input.name, model_input.sample_shape, model_input.batch
    workspace_mib, dla_cores = device.workspace_mib, device.dla_cores
    fp32, fp16 = f"{EXPORT}/{FP32_ONNX}", f"{QUANTIZE}/{FP16_ONNX}"
    qdq, cache = f"{QUANTIZE}/{INT8_TRT_ONNX}", f"{QUANTIZE}/{CALIB_CACHE}"
    majors = sorted({parse_version(v)[:2] for v in device.tensorrt_versions})
    families = []
    if any(v < (8, 4) for v in majors):
        families.append(("8.0–8.2", workspace_flag(workspace_mib, (8, 0)), False))
    if any((8, 4) <= v < (11, 0) for v in majors):
        families.append(("8.4–10.x", workspace_flag(workspace_mib, (8, 4)), False))
    if any(v >= (11, 0) for v in majors):
        families.append(("11.x", workspace_flag(workspace_mib, (11, 0)), True))
    shapes = _shapes(input_name, sample_shape, batch)
    commands = []
    for precision in precisions:
        save = f"--saveEngine={engine_file(precision)}"  # in the bundle's root: trtexec creates no directories
        for releases, workspace, strongly_typed in families:
            options: list[tuple[str, str]] = []  # (how, flags + the graph)
            if precision == "fp32":
                options.append(("FP32 graph", f"--onnx={fp32}"))
            elif precision == "fp16":
                if strongly_typed and fp16 in shipped:
                    options.append(("the FP16 graph, strongly typed", f"--onnx={fp16} --stronglyTyped"))
                elif not strongly_typed:
                    options.append(("FP16 builder flag on the FP32 graph", f"--onnx={fp32} --fp16"))
            elif precision == "int8":
                if qdq in shipped:
                    mode = "--stronglyTyped" if strongly_typed else "--int8 --fp16"
                    options.append(("explicit INT8 from the QDQ graph", f"--onnx={qdq} {mode}"))
                if cache in shipped and not strongly_typed:
                    options.append(("implicit INT8 from the calibration cache",
                                    f"--onnx={fp32} --int8 --fp16 --calib={cache}"))
            for how, flags in options:
                commands.append(TrtexecCommand(precision, releases, how,
                                               f"{TRTEXEC} {flags} {shapes} {workspace} {save}"))
                if dla_cores and precision in ("fp16", "int8") and not strongly_typed:
                    static = (batch[1],) * 3  # DLA builds a static batch
                    commands.append(TrtexecCommand(
                        precision, releases, how + ", on DLA core 0 (GPU fallback for layers DLA cannot run)",
                        f"{TRTEXEC} {flags} {_shapes(input_name, sample_shape, static)} {workspace} "
                        f"--useDLACore=0 --allowGPUFallback {save.replace('.engine', '.dla.engine')}"))
    return commands
