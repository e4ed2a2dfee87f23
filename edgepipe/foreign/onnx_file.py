"""What edgepipe reads of an ONNX file trained elsewhere, before it trusts it with a run: one image input and its
spec, the outputs, the opset, and external data that stays beside the file.

A foreign file is data, like a manifest: its external-data locations are resolved the way :func:`artifact_path`
resolves a manifest's files (inside the model's folder, symlinks followed), and it is never run before onnx has
parsed it and onnx.checker has passed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgepipe.artifacts import artifact_path
from edgepipe.errors import EdgepipeError, first_line

Dim = int | str | None  # a fixed size, a named dynamic axis, or an unnamed one


@dataclass(frozen=True)
class ForeignOnnx:
    path: Path
    input_name: str
    input_shape: tuple[Dim, ...]  # N, C, H, W
    outputs: dict[str, tuple[Dim, ...]]
    opset: int

    @property
    def static_batch(self) -> int | None:
        """The batch the graph is fixed to (an export with batch 1 baked in), None when the axis is dynamic."""
        return _fixed(self.input_shape[0])

    @property
    def channels(self) -> int | None:
        return _fixed(self.input_shape[1])

    def input_size(self, declared: tuple[int, int] | None) -> tuple[int, int]:
        """The (H, W) the model is run at: the graph's own when fixed (a declared size must agree), else the
        declared one (a graph with dynamic H/W runs at whatever it is fed, so the user must say what)."""
        fixed = (_fixed(self.input_shape[2]), _fixed(self.input_shape[3]))
        if None not in fixed:
            if declared is not None and tuple(declared) != fixed:
                raise EdgepipeError(f"{self.path.name}: input '{self.input_name}' is fixed at {fixed[0]}x{fixed[1]} "
                                    f"(H x W), but the preprocessing asks for {declared[0]}x{declared[1]}; drop the "
                                    "size or re-export the model at it")
            return fixed  # type: ignore[return-value]
        if declared is None:
            raise EdgepipeError(f"{self.path.name}: input '{self.input_name}' has dynamic height/width "
                                f"({_shape_text(self.input_shape)}); declare the size it was trained at "
                                "(--image-size H W, or dataset.image_size)")
        return int(declared[0]), int(declared[1])


def _fixed(dim: Dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _shape_text(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _dims(value) -> tuple[Dim, ...]:
    shape = value.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim)


def read_foreign_onnx(path: Path):
    """(ForeignOnnx, the checked ModelProto with its external data loaded); one line for anything else."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    path = Path(path)
    if not path.is_file():
        raise EdgepipeError(f"{path}: no such model file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError, or onnx's own on a protobuf that is not a ModelProto
        raise EdgepipeError(f"{path}: not an ONNX model ({type(exc).__name__}: {first_line(exc)[:120]})") from None
    if not model.graph.node:
        raise EdgepipeError(f"{path}: not an ONNX model (no graph nodes; is it another file renamed .onnx?)")
    external = [tensor for tensor in model.graph.initializer if uses_external_data(tensor)]
    for tensor in external:
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        artifact_path(path.parent, location, f"{path.name} (external data of {tensor.name!r})")
    if external:
        load_external_data_for_model(model, str(path.parent))
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise EdgepipeError(f"{path}: onnx.checker refuses it ({first_line(exc)[:160]})") from None
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise EdgepipeError(f"{path.name} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); an "
                            "imported model takes one image tensor")
    (image,) = inputs
    shape = _dims(image)
    if len(shape) != 4:
        raise EdgepipeError(f"{path.name}: input '{image.name}' has shape {_shape_text(shape)}; an imported model "
                            "takes images as [N, C, H, W]")
    if image.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(image.type.tensor_type.elem_type)
        raise EdgepipeError(f"{path.name}: input '{image.name}' is {kind}; edgepipe feeds float32 images "
                            "(re-export with a float input)")
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)
    outputs = {value.name: _dims(value) for value in model.graph.output}
    return ForeignOnnx(path, image.name, shape, outputs, opset), model
