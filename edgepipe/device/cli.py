"""The device runtime's command line: ``python3 edgepipe_device.py COMMAND BUNDLE ...`` (the launcher beside the
package checks the Python version first, then calls :func:`main`).

    python3 edgepipe_device.py build BUNDLE [--precision best|fp32|fp16|int8] [--dla-core N] [--batch 1:16:64]
    python3 edgepipe_device.py eval BUNDLE        # exit 1 when an artifact is over the accuracy budget
    python3 edgepipe_device.py infer BUNDLE INPUT.npy [--top 3]
    python3 edgepipe_device.py bench BUNDLE [--batch 1] [--seconds 3]
    python3 edgepipe_device.py triton BUNDLE        # model_repository/NAME/{config.pbtxt, 1/model.plan}
    python3 edgepipe_device.py deepstream BUNDLE    # a Gst-nvinfer config for the engine
    python3 edgepipe_device.py doctor               # Python, numpy, TensorRT, CUDA, GPU, trtexec here
"""

import argparse

from .commands import command_bench, command_build, command_doctor, command_eval, command_infer
from .common import say
from .errors import DeviceError
from .layout import PRECISIONS
from .serving import command_deepstream, command_triton
from .settings import OPTIONS


def add_build_options(subcommand):
    """`build`'s options, one per setting in settings.OPTIONS (the same flags as `edgepipe build`)."""
    for option in OPTIONS:
        kwargs = {"dest": option.name, "default": option.default, "help": option.help}
        if option.kind == "bool":
            kwargs["action"] = "store_true"
        elif option.kind == "int":
            kwargs.update(type=int, metavar="N")
        elif option.kind in ("batch", "path"):
            kwargs["metavar"] = "MIN:OPT:MAX" if option.kind == "batch" else "FILE"
        elif option.kind == "choice":
            kwargs["choices"] = option.choices
        subcommand.add_argument(option.flag, **kwargs)


def make_parser():
    cli = argparse.ArgumentParser(prog="edgepipe_device.py", description="Build, check and run an edgepipe "
                                     "deploy bundle with TensorRT and numpy only.")
    commands = cli.add_subparsers(dest="command")
    build = commands.add_parser("build", help="build a TensorRT engine from the bundle for this device")
    build.add_argument("bundle")
    add_build_options(build)
    evaluate = commands.add_parser("eval", help="accuracy, drop and agreement vs the stored reference outputs")
    evaluate.add_argument("bundle")
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--threads", type=int, default=None)
    evaluate.add_argument("--json", default=None)
    infer = commands.add_parser("infer", help="predict preprocessed inputs saved with numpy.save")
    infer.add_argument("bundle")
    infer.add_argument("input")
    infer.add_argument("--artifact", default=None)
    infer.add_argument("--top", type=int, default=3)
    infer.add_argument("--json", default=None)
    bench = commands.add_parser("bench", help="latency percentiles, throughput and device memory")
    bench.add_argument("bundle")
    bench.add_argument("--artifact", default=None)
    bench.add_argument("--batch", type=int, default=1)
    bench.add_argument("--seconds", type=float, default=3.0)
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--json", default=None)
    triton = commands.add_parser("triton", help="a Triton model repository around an engine built here")
    triton.add_argument("bundle")
    triton.add_argument("--precision", default=None, choices=PRECISIONS)
    triton.add_argument("--name", default=None)
    triton.add_argument("--out", default=None, help="model repository root (default BUNDLE/model_repository)")
    triton.add_argument("--max-queue-delay-us", type=int, default=100)
    deepstream = commands.add_parser("deepstream", help="a DeepStream Gst-nvinfer config for an engine built here")
    deepstream.add_argument("bundle")
    deepstream.add_argument("--precision", default=None, choices=PRECISIONS)
    deepstream.add_argument("--out", default=None)
    doctor = commands.add_parser("doctor", help="what this machine offers: Python, numpy, TensorRT, CUDA, trtexec")
    doctor.add_argument("--json", default=None)
    return cli


COMMANDS = {"build": command_build, "eval": command_eval, "infer": command_infer, "bench": command_bench,
            "triton": command_triton, "deepstream": command_deepstream, "doctor": command_doctor}


def main(argv=None):
    args = make_parser().parse_args(argv)
    if args.command not in COMMANDS:
        make_parser().print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except DeviceError as exc:
        say("error: {}".format(exc))
        return exc.exit_code
