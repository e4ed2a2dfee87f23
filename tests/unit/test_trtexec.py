"""trtexec command lines per precision and TensorRT family: what a device without the Python bindings runs."""

from __future__ import annotations

from edgepipe.trt.trtexec import TRTEXEC, BuildInput, DeviceFacts, trtexec_commands

SHIPPED = {"export/model.onnx", "quantize/model.fp16.onnx", "quantize/model.int8.trt.onnx", "quantize/trt.calib.cache"}


def _commands(versions, dla_cores=0, shipped=SHIPPED):
    return trtexec_commands(shipped, ["int8", "fp16", "fp32"], BuildInput("input", (1, 28, 28), (1, 16, 64)),
                            DeviceFacts(versions, workspace_mib=1024, dla_cores=dla_cores))


def test_each_tensorrt_family_gets_its_own_flags():
    commands = _commands(["8.2.1", "8.5.2", "11.4.1"])
    by = {(c.precision, c.tensorrt, c.how): c.command for c in commands}
    old = by[("fp16", "8.0–8.2", "FP16 builder flag on the FP32 graph")]
    assert old.startswith(TRTEXEC) and "--workspace=1024" in old and "--memPoolSize" not in old
    assert "--minShapes=input:1x1x28x28 --optShapes=input:16x1x28x28 --maxShapes=input:64x1x28x28" in old
    assert old.endswith("--saveEngine=model.fp16.engine")
    assert "--onnx=quantize/model.int8.trt.onnx --int8 --fp16" in by[("int8", "8.4–10.x", "explicit INT8 from the "
                                                                       "QDQ graph")]
    implicit = by[("int8", "8.4–10.x", "implicit INT8 from the calibration cache")]
    assert "--onnx=export/model.onnx --int8 --fp16 --calib=quantize/trt.calib.cache" in implicit
    assert "--memPoolSize=workspace:1024" in implicit
    # TensorRT 11: no precision flags and no implicit calibration; the graphs carry the precision.
    eleven = [c for c in commands if c.tensorrt == "11.x"]
    assert {c.how for c in eleven} == {"explicit INT8 from the QDQ graph", "the FP16 graph, strongly typed",
                                       "FP32 graph"}
    assert all("--int8" not in c.command and "--fp16" not in c.command and "--calib" not in c.command for c in eleven)


def test_dla_targets_get_static_batch_dla_commands_and_missing_files_none():
    commands = _commands(["8.5.2"], dla_cores=2, shipped={"export/model.onnx", "quantize/trt.calib.cache"})
    dla = [c.command for c in commands if "--useDLACore=0" in c.command]
    assert dla and all("--allowGPUFallback" in c and "--minShapes=input:16x1x28x28" in c for c in dla)
    assert not any("model.int8.trt.onnx" in c.command for c in commands)  # the QDQ graph was not shipped
    assert not any("--useDLACore" in c.command for c in commands if c.precision == "fp32")  # DLA has no FP32
