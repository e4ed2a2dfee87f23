"""An imported YOLO detector's ONNX graph with edgepipe's decode appended (models/yolo.py says why in the graph).

The decode is exported once by torch.onnx (dynamo, with the NonMaxSuppression translation of models/nms.py) for the
raw output's measured shape, and joined to the user's graph with ``onnx.compose.merge_models``; the user's graph is
brought to the decode's opset first with ``onnx.version_converter`` (opset 18 is what the exporter writes).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from edgepipe.errors import EdgepipeError, first_line

DECODE_PREFIX = "decode/"
DECODE_OPSET = 18
RAW_INPUT = "raw"


def append_decode(model, decode, *, raw_output: str | None = None, name: str = "model.onnx"):
    """``model`` (a ModelProto, or the path of one) ending in edgepipe's four detection outputs instead of its raw
    output in ``decode``'s layout (``decode``: the models.yolo.YoloDecode that says the layout, classes, input size,
    NMS IoU, detections kept and score floor); ``name`` is what messages call it."""
    import onnx

    from edgepipe.models.yolo import raw_shape_problem

    layout, num_classes, image_size = decode.layout, decode.num_classes, decode.image_size

    if isinstance(model, (str, Path)):
        model_path = Path(model)
        model, name = onnx.load(str(model_path)), model_path.name
    model_path = Path(name)
    outputs = [output.name for output in model.graph.output]
    if raw_output is None:
        if len(outputs) != 1:
            raise EdgepipeError(f"{model_path.name} has {len(outputs)} outputs ({', '.join(outputs)}); name the one "
                                f"in the {layout} layout (--raw-output)")
        raw_output = outputs[0]
    elif raw_output not in outputs:
        raise EdgepipeError(f"{model_path.name} has no output {raw_output!r}; its outputs: {', '.join(outputs)}")
    raw_shape = _raw_shape(model_path, model, raw_output, image_size)
    problem = raw_shape_problem(layout, raw_shape, num_classes)
    if problem:
        raise EdgepipeError(f"{model_path.name}: output {raw_output!r} is not {layout}: {problem}")
    decode = decode.eval()
    opset = max(DECODE_OPSET, _default_opset(model))
    decode_model = _export_decode(decode, raw_shape, opset)
    model = _at_opset(model, opset, model_path)
    ir_version = max(model.ir_version, decode_model.ir_version)
    model.ir_version = decode_model.ir_version = ir_version
    decode_model = onnx.compose.add_prefix(decode_model, DECODE_PREFIX, rename_inputs=False, rename_outputs=False)
    merged = onnx.compose.merge_models(model, decode_model, io_map=[(raw_output, RAW_INPUT)])
    for output in list(merged.graph.output):  # the raw output stays inside: the contract is the four outputs
        if output.name == raw_output:
            merged.graph.output.remove(output)
    _one_import_per_domain(merged)
    onnx.checker.check_model(merged)
    return merged


def _one_import_per_domain(model) -> None:
    """merge_models lists a domain once per input model; keep each domain once, at its highest version."""
    highest: dict[str, int] = {}
    for entry in model.opset_import:
        highest[entry.domain] = max(entry.version, highest.get(entry.domain, 0))
    del model.opset_import[:]
    for domain, version in highest.items():
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, version


def _default_opset(model) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), DECODE_OPSET)


def _at_opset(model, opset: int, path: Path):
    from onnx import version_converter

    if _default_opset(model) == opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises its own RuntimeError/ValidationError per adapter
        raise EdgepipeError(f"{path.name}: cannot bring opset {_default_opset(model)} to {opset} for the decode "
                            f"({first_line(exc)[:160]}); re-export it at opset {opset}") from None


def _raw_shape(path: Path, model, raw_output: str, image_size: tuple[int, int]) -> tuple:
    """The raw output's shape for one image at ``image_size``, measured on onnxruntime (dynamic H/W resolved)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (first, *rest) = session.get_inputs()
    if rest:
        raise EdgepipeError(f"{path.name} has {len(rest) + 1} inputs; an imported detector takes one image tensor")
    channels = first.shape[1] if isinstance(first.shape[1], int) else 3
    batch = first.shape[0] if isinstance(first.shape[0], int) else 1
    feed = np.zeros((batch, channels, *image_size), np.float32)
    (raw,) = session.run([raw_output], {first.name: feed})
    return tuple(int(side) for side in raw.shape)


def _export_decode(decode, raw_shape: tuple, opset: int):
    import contextlib
    import warnings

    import onnx
    import torch

    example = torch.zeros((2, *raw_shape[1:]), dtype=torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(decode, (example,), input_names=[RAW_INPUT],
                                    output_names=["boxes", "scores", "classes", "num_detections"],
                                    dynamic_axes={RAW_INPUT: {0: "batch"}}, opset_version=opset, dynamo=True,
                                    custom_translation_table=decode.onnx_translations)
    program.save(buffer)
    return onnx.load_from_string(buffer.getvalue())
