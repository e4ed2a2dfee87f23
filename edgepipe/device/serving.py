"""Serving an engine built from a bundle: a Triton model repository (config.pbtxt for a TensorRT plan) and a
DeepStream Gst-nvinfer config."""

import os
import shutil

import numpy as np

from .bundle import Bundle
from .common import emit, say, write_bytes_atomic
from .engine import Engine
from .errors import DeviceError
from .layout import (
    CLASSIFIER_PARSER_FUNCTION,
    DEEPSTREAM,
    DEEPSTREAM_TASKS,
    LABELS_TXT,
    PARSER_FUNCTION,
    PARSER_LIBRARY,
    PRECISIONS,
)
from .scoring import DETECTION_OUTPUTS, DISPLAY_SCORE

# numpy type -> Triton DataType (triton-inference-server/common protobuf/model_config.proto).
_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int8": "TYPE_INT8", "int32": "TYPE_INT32",
                 "int64": "TYPE_INT64", "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8"}
# nvinfer network-mode per precision (DeepStream Gst-nvinfer docs: 0 FP32, 1 INT8, 2 FP16).
_NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}


def _built_engine(bundle, precision):
    engines = [e for e in bundle.engines() if precision in (None, e[1])]
    if not engines:
        wanted = precision or "any precision"
        raise DeviceError("no engine ({}) built in {} yet; run `python3 edgepipe_device.py build {}` first".format(
            wanted, bundle.path, bundle.path))
    order = dict((p, i) for i, p in enumerate(PRECISIONS))
    return sorted(engines, key=lambda e: order.get(e[1], len(order)))[0]


def _engine_io(path, settings):
    """[(name, is_input, dtype name, shape, min batch, max batch)] of a built engine, read from the engine."""
    with Engine(path, settings) as loaded:
        return [(io.name, io.is_input, np.dtype(io.dtype).name, io.shape,
                 io.min_shape[0] if io.min_shape else None, io.max_shape[0] if io.max_shape else None)
                for io in loaded.ios]


def triton_config(name, ios, dla_core=None, max_queue_delay_us=100, labels=None):
    """config.pbtxt (protobuf text of inference.ModelConfig) for a TensorRT plan with a dynamic batch axis."""
    inputs = [io for io in ios if io[1]]
    min_batch, max_batch = max(io[4] for io in inputs), min(io[5] for io in inputs)
    static = min_batch == max_batch and max_batch > 1  # DLA: a static batch Triton must not split
    if min_batch > 1 and not static:
        raise DeviceError("the engine's profile starts at batch {} but Triton's dynamic batcher sends any batch from "
                          "1 up; build with --batch 1:OPT:MAX (or a static batch N:N:N)".format(min_batch))
    lines = ['name: "{}"'.format(name), 'platform: "tensorrt_plan"',
             "max_batch_size: {}".format(0 if static else max_batch)]

    def tensor(io, kind):
        dims = list(io[3]) if static else list(io[3][1:])
        dims = [max_batch if (static and i == 0 and d < 0) else d for i, d in enumerate(dims)]
        if io[2] not in _TRITON_TYPES:
            raise DeviceError("tensor {} has type {}, which Triton's config has no name for".format(io[0], io[2]))
        fields = ['name: "{}"'.format(io[0]), "data_type: {}".format(_TRITON_TYPES[io[2]])]
        if dims:
            fields.append("dims: [ {} ]".format(", ".join(str(d) for d in dims)))
        else:  # a tensor of one value per sample ([batch]): Triton wants dims, so [1] reshaped to none (its
            # model_configuration.md, "Reshape": dims: [ 1 ] reshape: { shape: [ ] })
            fields += ["dims: [ 1 ]", "reshape: { shape: [ ] }"]
        if kind == "output" and labels:
            fields.append('label_filename: "{}"'.format(labels))
        return "  {\n    " + "\n    ".join(fields) + "\n  }"

    lines.append("input [\n" + ",\n".join(tensor(io, "input") for io in inputs) + "\n]")
    lines.append("output [\n" + ",\n".join(tensor(io, "output") for io in ios if not io[1]) + "\n]")
    if not static:
        preferred = sorted(set(b for b in (min(max_batch, 16), max_batch) if b >= 1))
        lines.append("dynamic_batching {{\n  preferred_batch_size: [ {} ]\n  max_queue_delay_microseconds: {}\n}}"
                     .format(", ".join(str(b) for b in preferred), int(max_queue_delay_us)))
    group = ["    kind: KIND_GPU", "    count: 1"]
    if dla_core is not None:  # Triton runs a DLA engine on the GPU instance with the DLA as its secondary device
        group.append("    secondary_devices [ {{ kind: KIND_NVDLA device_id: {} }} ]".format(int(dla_core)))
    lines.append("instance_group [\n  {\n" + "\n".join(group) + "\n  }\n]")
    return "\n".join(lines) + "\n"


def command_triton(args):
    """BUNDLE/model_repository/NAME/{config.pbtxt, 1/model.plan, labels.txt} from an engine built here."""
    bundle = Bundle(args.bundle).verify()
    name, precision, engine_path, settings = _built_engine(bundle, args.precision)
    model = args.name or "{}_{}".format(bundle.manifest.get("recipe_name") or "model", precision).replace("-", "_")
    ios = _engine_io(engine_path, settings)
    labels = bundle.labels()
    root = os.path.abspath(args.out or os.path.join(bundle.path, "model_repository"))
    model_dir = os.path.join(root, model)
    tmp = model_dir + ".tmp-{}".format(os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "1"))
    try:
        shutil.copyfile(engine_path, os.path.join(tmp, "1", "model.plan"))
        if labels:
            write_bytes_atomic(os.path.join(tmp, LABELS_TXT), ("\n".join(labels) + "\n").encode("utf-8"))
        # Triton's label_filename names the classes of a classification output; a detector's class ids stay ids
        # (labels.txt still ships beside the plan for the client to map them)
        classifier = bundle.task().name == "classification"
        text = triton_config(model, ios, settings.get("dla_core"), args.max_queue_delay_us,
                             LABELS_TXT if labels and classifier else None)
        write_bytes_atomic(os.path.join(tmp, "config.pbtxt"), text.encode("utf-8"))
        shutil.rmtree(model_dir, ignore_errors=True)
        os.rename(tmp, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(os.path.join(model_dir, "config.pbtxt"))
    say("triton: {} ({}) -> {}; serve with `tritonserver --model-repository={}` on a Triton built for this "
        "device's TensorRT release (a plan only loads on the release that built it)".format(
            name, precision, model_dir, root))
    return 0


# What nvinfer is told per task: its network-type and how it reads the outputs (Gst-nvinfer config keys, checked
# against DeepStream's gstnvinfer_property_parser.h).
_PARSER_DTYPES = ("float32", "float16", "int32")  # what nvinfer_parser/nvdsinfer_edgepipe.cpp reads
_LOGIT_DTYPES = ("float32", "float16")  # what its classifier parser reads
# classifier-threshold is the softmax probability the parser must see to attach the class; 0 attaches every argmax.
# gst-nvinfer refuses a negative one: gst_nvinfer_parse_props in DeepStream 6.x's gstnvinfer_property_parser.cpp
# prints "Negative value specified for classifier-threshold" and fails the config (read in the copy vendored by
# zhouyuchong/face-recognition-deepstream, gst-nvinfer-custom/origin/gst-nvinfer/).
CLASSIFIER_THRESHOLD = 0.0


def _preprocessing_props(bundle, lines):
    """(net-scale-factor, offsets, model-color-format; the letterbox keys), with warnings for what nvinfer cannot
    reproduce of the model's evaluated preprocessing appended to ``lines``."""
    prep = (bundle.manifest.get("dataset") or {}).get("preprocessing") or {}
    if prep.get("kind") != "image":
        raise DeviceError("DeepStream feeds video frames; this model was not trained on images ({})".format(
            prep.get("kind", "no preprocessing recorded")))
    scale, mean, std = float(prep["scale"]), [float(m) for m in prep["mean"]], [float(s) for s in prep["std"]]
    channels = int(prep["channels"])
    # nvinfer computes y = net-scale-factor * (x - offsets) on 0-255 pixels, one factor for all channels; the
    # model wants (x * scale - mean) / std per channel, so factor = scale / std and offsets = mean / scale.
    factor = scale / (sum(std) / len(std))
    if max(std) - min(std) > 1e-3 * max(std):
        lines.append("# std differs per channel ({}): nvinfer applies one net-scale-factor (their mean); for exact "
                     "per-channel normalization use nvdspreprocess".format(", ".join("{:.4f}".format(s) for s in std)))
    warnings = []
    if prep.get("resize"):
        # nvinfer scales the whole frame (or object) to the network size; it cannot resize the shorter side and
        # crop the centre as this model was evaluated. Said in the config and on the terminal, not hidden.
        height, width = prep["size"][0], prep["size"][1]
        warnings.append(("this model was evaluated on the centre {}x{} crop of images resized to {} on the shorter "
                         "side; nvinfer stretches the whole frame to {}x{} instead, so its accuracy can differ from "
                         "the bundle's eval (crop in an nvdspreprocess ROI, or train with dataset.resize unset)"
                         ).format(height, width, prep["resize"], height, width))
    letterbox = prep.get("resize_mode") == "letterbox"
    if letterbox and int(prep.get("pad_value", 0)) != 0:
        # nvinfer keeps the aspect ratio and pads (maintain-aspect-ratio, symmetric-padding) with black only.
        warnings.append(("this model was evaluated letterboxed with padding {}; nvinfer pads with 0, so detections "
                         "near the borders can differ from the bundle's eval").format(prep["pad_value"]))
    for warning in warnings:
        lines.append("# WARNING: " + warning)
        say("deepstream: warning: " + warning)
    normalization = [("net-scale-factor", repr(factor)), ("offsets", ";".join(repr(m / scale) for m in mean)),
                     # 0 RGB, 1 BGR, 2 GRAY
                     ("model-color-format", 2 if channels == 1 else 1 if prep.get("channel_order") == "BGR" else 0)]
    # edgepipe's letterbox centres the image (ultralytics' LetterBox), as symmetric-padding does
    aspect = [("maintain-aspect-ratio", 1), ("symmetric-padding", 1)] if letterbox else []
    return normalization, aspect


def _detector_props(bundle, ios, where, lines):
    """The keys that hand a detector's outputs to the bundled parser, and its [class-attrs-all] group."""
    outputs = dict((io[0], io[2]) for io in ios if not io[1])
    missing = [name for name in DETECTION_OUTPUTS if name not in outputs]
    if missing:
        raise DeviceError("deepstream: the engine has no output {}; the bundled parser reads edgepipe's detection "
                          "outputs ({})".format(", ".join(missing), ", ".join(DETECTION_OUTPUTS)))
    unreadable = ["{} ({})".format(n, outputs[n]) for n in DETECTION_OUTPUTS if outputs[n] not in _PARSER_DTYPES]
    if unreadable:
        raise DeviceError("deepstream: the parser reads float32, float16 or int32 outputs, not {}; rebuild the "
                          "engine from this bundle's ONNX".format(", ".join(unreadable)))
    threshold = float((bundle.manifest.get("task") or {}).get("display_score", DISPLAY_SCORE))
    lines.append("# detections leave the engine after NMS; {} (built by `make -C {}`) reads them, and "
                 "cluster-mode=4 adds no clustering of nvinfer's own".format(PARSER_LIBRARY, DEEPSTREAM))
    props = [("network-type", 0),  # detector
             ("num-detected-classes", len(bundle.labels())),
             ("output-blob-names", ";".join(DETECTION_OUTPUTS)),
             ("parse-bbox-func-name", PARSER_FUNCTION),
             ("custom-lib-path", where(os.path.join(bundle.path, DEEPSTREAM, PARSER_LIBRARY))),
             ("cluster-mode", 4)]  # NVDSINFER_CLUSTER_NONE (DeepStream 5.1+; 5.0 numbered it 3)
    # what `infer` shows; nvinfer's own default (0.2) would differ from the bundle's eval view
    return props, [("pre-cluster-threshold", repr(threshold))]


def _classifier_props(ios, where, library, lines):
    """The keys that hand a classifier's logits to the bundled parser (softmax, argmax, probability threshold)."""
    outputs = [(io[0], io[2]) for io in ios if not io[1]]
    if len(outputs) != 1 or outputs[0][1] not in _LOGIT_DTYPES:
        raise DeviceError("deepstream: the classifier parser reads one float32 or float16 logits output; this engine "
                          "has {}".format(", ".join("{} ({})".format(n, t) for n, t in outputs) or "none"))
    lines.append("# the engine outputs logits: {} (built by `make -C {}`) takes their softmax and attaches the argmax "
                 "class with its probability when that reaches classifier-threshold (0-1; 0: always), named from "
                 "the bundle's {}".format(PARSER_LIBRARY, DEEPSTREAM, LABELS_TXT))
    return [("network-type", 1),  # classifier
            ("classifier-threshold", repr(CLASSIFIER_THRESHOLD)),
            ("output-blob-names", outputs[0][0]),
            ("parse-classifier-func-name", CLASSIFIER_PARSER_FUNCTION),
            ("custom-lib-path", where(library))]


DEEPSTREAM_LABELS = "deepstream_labels.txt"  # beside the config: nvinfer's label file differs from labels.txt


def deepstream_config(bundle, precision, engine_path, ios, settings, config_path):
    """A Gst-nvinfer config (DeepStream docs, "Gst-nvinfer File Configuration Specifications"): the [property]
    group, and for a detector its [class-attrs-all] group; its label file is DEEPSTREAM_LABELS beside it."""
    task = bundle.task().name
    labels_path = os.path.join(os.path.dirname(config_path), DEEPSTREAM_LABELS)
    lines = ["# edgepipe: nvinfer config for {} ({}), made by edgepipe_device.py deepstream".format(
        bundle.manifest.get("recipe_name"), precision)]
    normalization, aspect = _preprocessing_props(bundle, lines)
    files = bundle.build_files()
    batch = min(io[5] for io in ios if io[1])

    def where(path):  # nvinfer resolves paths against the config file's directory
        return os.path.relpath(path, os.path.dirname(config_path))

    props = [("gpu-id", 0)] + normalization
    if files["fp32_onnx"] is not None:  # lets nvinfer rebuild the engine itself if the plan does not load
        props.append(("onnx-file", where(files["fp32_onnx"])))
    props += [("model-engine-file", where(engine_path)), ("labelfile-path", where(labels_path)),
              ("batch-size", batch), ("network-mode", _NETWORK_MODES[precision]),
              ("process-mode", 1), ("gie-unique-id", 1), ("interval", 0)]
    class_attrs = []
    if task == "detection":
        detector, class_attrs = _detector_props(bundle, ios, where, lines)
        props += detector
    else:
        props += _classifier_props(ios, where, os.path.join(bundle.path, DEEPSTREAM, PARSER_LIBRARY), lines)
    props += aspect
    if precision == "int8" and files["calibration_cache"] is not None:
        props.append(("int8-calib-file", where(files["calibration_cache"])))
    if settings.get("dla_core") is not None:
        props += [("enable-dla", 1), ("use-dla-core", int(settings["dla_core"]))]
    groups = [("property", props)] + ([("class-attrs-all", class_attrs)] if class_attrs else [])
    body = []
    for name, group in groups:
        body += ["[{}]".format(name)] + ["{}={}".format(k, v) for k, v in group]
    return "\n".join(lines + body) + "\n"


def deepstream_labels(task, labels):
    """nvinfer's label file: a classifier's is one line per output layer, its classes separated by ';'; a
    detector's is one class per line (nvdsinfer_context_impl_output_parsing.cpp names object c by m_Labels[c][0])."""
    return ("\n" if task == "detection" else ";").join(labels) + "\n"


def command_deepstream(args):
    bundle = Bundle(args.bundle).verify()
    task = bundle.task()
    if task.name not in DEEPSTREAM_TASKS:
        raise DeviceError("deepstream: this bundle's model is a {} model; the nvinfer config written here is for "
                          "{} models".format(task.name, " and ".join(DEEPSTREAM_TASKS)))
    if bundle.listed(DEEPSTREAM + "/Makefile") is None:
        raise DeviceError("deepstream: this bundle carries no {}/ parser sources (bundled before edgepipe shipped "
                          "them); rerun `edgepipe bundle RUN --target PROFILE --out DIR`".format(DEEPSTREAM))
    name, precision, engine_path, settings = _built_engine(bundle, args.precision)
    out = os.path.abspath(args.out or os.path.join(bundle.path, "deepstream_nvinfer_{}.txt".format(precision)))
    labels_path = os.path.join(os.path.dirname(out), DEEPSTREAM_LABELS)
    text = deepstream_config(bundle, precision, engine_path, _engine_io(engine_path, settings), settings, out)
    write_bytes_atomic(labels_path, deepstream_labels(task.name, bundle.labels()).encode("utf-8"))
    write_bytes_atomic(out, text.encode("utf-8"))
    if not os.path.isfile(os.path.join(bundle.path, DEEPSTREAM, PARSER_LIBRARY)):
        say("deepstream: the config loads {0}/{1}/{2}; build it first: make -C {0}/{1} "
            "DS_ROOT=/opt/nvidia/deepstream/deepstream CUDA_VER=<your CUDA, e.g. 11.4>".format(
                bundle.path, DEEPSTREAM, PARSER_LIBRARY))
    emit(out)
    return 0
