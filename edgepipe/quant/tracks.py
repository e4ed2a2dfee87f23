"""One calibration, two INT8 graphs: QDQ for TensorRT (int8/int8 symmetric) and QDQ u8s8 for onnxruntime's CPU.

onnxruntime.quantization does both: ``create_calibrator`` collects the ranges once; they are saved with
``save_tensors_data`` and handed to ``quantize_static(calibration_cache_path=...)`` for each track, so
neither track re-runs calibration and both quantize from the very same numbers. Only the typed
options below are exposed; onnxruntime's free-form ``extra_options`` dict stays inside this module.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe import diskspace
from edgepipe.errors import EdgepipeError

QUANTIZED_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class Track:
    """How one INT8 graph is quantized."""

    name: str  # "trt" | "cpu"
    activation_signed: bool  # int8 activations (TensorRT) or uint8 (onnxruntime CPU u8s8)
    activation_symmetric: bool
    reduce_range: bool = False
    quantize_bias: bool = True

    def quantize_kwargs(self) -> dict:
        from onnxruntime.quantization import QuantType

        return {
            "activation_type": QuantType.QInt8 if self.activation_signed else QuantType.QUInt8,
            "weight_type": QuantType.QInt8,
            "per_channel": True,  # weights per output channel (axis 0 for Conv, the output axis for Gemm)
            "reduce_range": self.reduce_range,
            "extra_options": {"ActivationSymmetric": self.activation_symmetric, "WeightSymmetric": True,
                              "QuantizeBias": self.quantize_bias},
        }


def trt_track() -> Track:
    # TensorRT explicit quantization: symmetric int8 activations and weights, zero-point 0.
    # Bias stays float: TensorRT's DequantizeLinear takes int8 (fp8/int4) inputs, not onnxruntime's int32 bias,
    # and TensorRT fuses the float bias into the int8 convolution itself.
    return Track("trt", activation_signed=True, activation_symmetric=True, quantize_bias=False)


def cpu_track(reduce_range: bool = False) -> Track:
    # onnxruntime's fast CPU kernels (VNNI / AVX2 u8s8): asymmetric uint8 activations, int8 weights.
    return Track("cpu", activation_signed=False, activation_symmetric=False, reduce_range=reduce_range)


def tracks_for(config) -> dict[str, Track]:
    """Both INT8 tracks a quantize config makes, by the file each writes (``config``: QuantizeConfig)."""
    from edgepipe.run import INT8_CPU_ONNX, INT8_TRT_ONNX

    return {INT8_TRT_ONNX: trt_track(), INT8_CPU_ONNX: cpu_track(config.reduce_range)}


def calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if name not in methods:
        raise EdgepipeError(f"calibration method {name!r}; choose one of {', '.join(methods)}")
    return methods[name]


@contextlib.contextmanager
def quiet_onnxruntime():
    """onnxruntime.quantization logs pre-processing advice and per-tensor notes at WARNING; keep errors only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _onnx_temporaries(model: Path, where: Path, what: str):
    """A block in which onnxruntime writes copies of ``model`` into ``where`` and reads them back: a full disk
    there (ENOSPC, or the protobuf DecodeError of a copy onnx's C++ writer cut short: onnxruntime's
    quant_utils.load_model_with_shape_infer reads back what onnx.shape_inference.infer_shapes_path wrote) is one
    DiskFull line."""
    from google.protobuf.message import DecodeError

    # the shape-inferred copy, the augmented or quantized model: each about the model's size
    return diskspace.writing(where, what, needed=2 * Path(model).stat().st_size, short_write_errors=(DecodeError,))


def preprocess(source: Path, out: Path) -> Path:
    """quant_pre_process: shape inference + graph optimization (e.g. Conv+BN folding) before quantizing."""
    from google.protobuf.message import DecodeError
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with quiet_onnxruntime():
        try:
            quant_pre_process(str(source), str(out), skip_symbolic_shape=True)
        except Exception as exc:
            needed = 2 * Path(source).stat().st_size  # the shape-inferred and the optimized copy
            if diskspace.looks_full(exc, Path(out).parent, needed, (DecodeError,)):
                raise diskspace.disk_full(Path(out).parent, f"{Path(out).name} (onnxruntime's pre-processing)",
                                          needed) from None
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise EdgepipeError(f"{source}: onnxruntime cannot prepare it for quantization ({first})") from None
    return out


def calibrate(model: Path, reader, method: str, percentile: float, ranges_path: Path) -> dict[str, tuple[float, float]]:
    """Run the calibrator once; save onnxruntime's TensorsData to ``ranges_path``; return {tensor: (lo, hi)}."""
    from onnxruntime.quantization import create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data

    options = {"percentile": percentile} if method == "percentile" else {}
    with _onnx_temporaries(model, Path(ranges_path).parent, "onnxruntime's calibration temporaries"), \
            tempfile.TemporaryDirectory(prefix="calib-", dir=Path(ranges_path).parent) as scratch, quiet_onnxruntime():
        # Every float tensor is calibrated: the QDQ tracks pick what they need, the TensorRT cache wants all.
        calibrator = create_calibrator(model, None,
                                       augmented_model_path=str(Path(scratch) / "augmented.onnx"),
                                       calibrate_method=calibration_method(method), extra_options=options)
        try:
            calibrator.collect_data(reader)
            tensors_data = calibrator.compute_data()
        except ValueError as exc:  # the histogram calibrators stack every tensor: a data-dependent size breaks them
            raise EdgepipeError(f"calibration method {method} cannot run on this graph: onnxruntime's histogram "
                                f"calibrator refused its tensors ({type(exc).__name__}), which change size from batch "
                                "to batch (a detector's NMS); use --method minmax") from None
        del calibrator
    tensors_data.data = dict(sorted(tensors_data.data.items()))  # same ranges, same bytes, in every process
    save_tensors_data(tensors_data, ranges_path)
    return load_ranges(ranges_path)


def load_ranges(ranges_path: Path) -> dict[str, tuple[float, float]]:
    from onnxruntime.quantization.calibrate import load_tensors_data

    tensors_data = load_tensors_data(ranges_path)
    ranges = {}
    for name, data in tensors_data.items():
        lowest, highest = (float(np.asarray(v).reshape(-1)[0]) for v in data.range_value)
        if not (np.isfinite(lowest) and np.isfinite(highest)):
            raise EdgepipeError(f"calibration range of tensor {name!r} is not finite ({lowest}, {highest}); the model "
                                "overflows on the calibration set")
        ranges[name] = (lowest, highest)
    return ranges


def quantize_track(model: Path, out: Path, track: Track, method: str, ranges_path: Path,
                   nodes_to_exclude: list[str] | tuple[str, ...] = ()) -> Path:
    """QDQ-quantize ``model`` for ``track`` from the saved calibration ranges (no calibration run here)."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    kept_float = detector_float_nodes(model)
    excluded = [*kept_float, *[name for name in nodes_to_exclude if name not in set(kept_float)]]
    with quiet_onnxruntime(), _onnx_temporaries(model, Path(out).parent, f"{Path(out).name} (onnxruntime's "
                                                "quantizer)"):
        quantize_static(model, out, None, quant_format=QuantFormat.QDQ, calibrate_method=calibration_method(method),
                        calibration_cache_path=ranges_path, nodes_to_exclude=excluded,
                        op_types_to_quantize=None, **track.quantize_kwargs())
    strip_for_deploy(out)
    return out


def decode_nodes(model_path: Path) -> list[str]:
    """A detector's decode, kept in float in every INT8 graph: the nodes after its last weight layers (peak test,
    TopK, box arithmetic), found when the graph's outputs are the detection contract. INT8 there would turn the
    scores that TopK ranks into 256 levels and the box coordinates into steps of several pixels."""
    import onnx

    from edgepipe.device.scoring import DETECTION_OUTPUTS

    graph = onnx.load(str(model_path), load_external_data=False).graph
    if not set(DETECTION_OUTPUTS) <= {output.name for output in graph.output}:
        return []
    initializers = {init.name for init in graph.initializer}
    weighted = {node.name for node in graph.node if node.op_type in QUANTIZED_OP_TYPES
                and len(node.input) > 1 and node.input[1] in initializers}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    feeds_weights: set[str] = set()  # nodes with a weight layer downstream (the network itself)
    for node in reversed(graph.node):  # exporters write nodes in topological order
        if any(c.name in weighted or c.name in feeds_weights for out in node.output for c in consumers.get(out, [])):
            feeds_weights.add(node.name)
    return [node.name for node in graph.node
            if node.name and node.name not in weighted and node.name not in feeds_weights]


def detector_float_nodes(model_path: Path) -> list[str]:
    """What a detector keeps in float in every INT8 graph: its decode, and the output convs that feed it (the class
    heatmap and box maps: ~1 % of the MACs, and their INT8 steps would move every score TopK ranks). Measured on
    mnist-canvas CenterNet, test mAP@0.5 drop of the TensorRT track: 1.09 pts all INT8, 0.17 with these in float."""
    decode = decode_nodes(model_path)
    if not decode:
        return []
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    inside = set(decode)
    heads = {producer[name].name for node in graph.node if node.name in inside for name in node.input
             if name in producer and producer[name].name not in inside and producer[name].op_type in QUANTIZED_OP_TYPES}
    return [node.name for node in graph.node if node.name in heads] + decode


def strip_for_deploy(path: Path) -> None:
    """Drop shape annotations and exporter metadata (onnxruntime re-infers shapes): smaller files to copy."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    _drop_int32_zero_points(model)
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    for value in [*model.graph.input, *model.graph.output, *model.graph.initializer]:
        del value.metadata_props[:]
        value.doc_string = ""
    onnx.save(model, str(path))


def _drop_int32_zero_points(model) -> None:
    """Int32 bias zero-points are all zeros, one per channel: the optional input's default says the same."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    dropped = set()
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 or node.input[2] not in initializers:
            continue
        zero_point = initializers[node.input[2]]
        if zero_point.data_type == onnx_int32() and not numpy_helper.to_array(zero_point).any():
            dropped.add(node.input[2])
            del node.input[2]
    still_used = {name for node in model.graph.node for name in node.input}
    kept = [init for init in model.graph.initializer if init.name not in dropped or init.name in still_used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def onnx_int32() -> int:
    import onnx

    return onnx.TensorProto.INT32


def graph_nodes(model_path: Path) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """(name, op type, inputs, outputs) of every named node: how profiler kernels are traced back to nodes."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [(node.name, node.op_type, tuple(node.input), tuple(node.output)) for node in graph.node if node.name]


def quantized_nodes(model_path: Path, quantized_paths: list[Path]) -> list[tuple[str, str]]:
    """(node name, op type), in graph order, of every node of ``model_path`` that onnxruntime quantized in any of
    ``quantized_paths`` (QDQ graphs made from it): weight layers and activation-only nodes (Add, Softmax,
    LayerNormalization, activation x activation MatMul...). Excluding all of them leaves no QuantizeLinear.

    Which op types quantize_static(op_types_to_quantize=None) takes is onnxruntime's own registry
    (quantization/quantize.py, quantize_static: QLinearOpsRegistry keys + QDQRegistry keys). Whether a node of
    such a type really got quantized depends on the graph (float inputs, an upstream tensor already quantized), so
    that is read off the QDQ graph: a node whose input comes from a DequantizeLinear or whose output feeds a
    QuantizeLinear, or one onnxruntime removed (a Relu/Clip folded into the QDQ pair of its input).
    """
    import onnx
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    op_types = set(QLinearOpsRegistry) | set(QDQRegistry)
    model = onnx.load(str(model_path), load_external_data=False)
    named = {node.name for node in model.graph.node}
    touched: set[str] = set()
    for path in quantized_paths:
        graph = onnx.load(str(path), load_external_data=False).graph
        dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
        to_quantize = {node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
        touched |= named - {node.name for node in graph.node}  # removed by the quantizer
        touched |= {node.name for node in graph.node
                    if dequantized.intersection(node.input) or to_quantize.intersection(node.output)}
    # nodes_to_exclude matches by name: an unnamed node could not be returned to float anyway.
    return [(node.name, node.op_type) for node in model.graph.node
            if node.name and node.op_type in op_types and node.name in touched]


def qdq_parameters(model_path: Path) -> list[dict]:
    """Every QuantizeLinear/DequantizeLinear: node, input tensor, scale and zero-point arrays."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path), load_external_data=False)
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    found = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        found.append({"node": node.name, "op": node.op_type, "input": node.input[0], "axis": axis,
                      "scale": constants[node.input[1]], "zero_point": zero_point,
                      "weight": node.input[0] in constants})
    return found


def check_trt_qdq(model_path: Path) -> None:
    """What TensorRT's explicit mode needs: scales positive and finite, zero-points 0, int8, checker-valid."""
    import onnx

    try:
        onnx.checker.check_model(str(model_path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EdgepipeError(f"{model_path.name} fails onnx.checker: {str(exc).splitlines()[0]}") from None
    for entry in qdq_parameters(model_path):
        scale = np.asarray(entry["scale"], dtype=np.float64)
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise EdgepipeError(f"{model_path.name}: {entry['node']} has a non-positive or non-finite scale")
        zero_point = entry["zero_point"]
        if zero_point is not None and (zero_point.dtype != np.int8 or np.any(zero_point != 0)):
            raise EdgepipeError(f"{model_path.name}: {entry['node']} zero-point is not int8 0 "
                                f"({zero_point.dtype}); TensorRT needs symmetric quantization")
