"""The device runtime's two errors. The workstation's own (edgepipe.errors.EdgepipeError, MissingDependency) are
these very classes, so an error raised here needs no translation anywhere: the command line turns it into one
line and exit code 2 on the device and on the workstation alike."""


class DeviceError(Exception):
    """Bad input or a missing piece, said in one line; the command exits 2."""

    exit_code = 2


class MissingPiece(DeviceError):
    """A dependency (TensorRT, CUDA, onnxruntime, trtexec) this machine lacks."""
