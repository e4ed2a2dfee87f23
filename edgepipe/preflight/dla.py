"""Which ONNX ops can become DLA layers: a pre-filter, the builder has the last word per layer.

Source: TensorRT developer guide, "DLA Supported Layers and Restrictions"
(https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html):
general rules (FP16/INT8 only, no dynamic dimensions, batch ≤ 4096, non-batch dims ≤ 8192) and the
per-layer table. The ONNX-op → TensorRT-layer mapping and the "Orin (DLA 2.0) only" marks below are
this module's reading of that page; layer limits are summarized, not exhaustive.
DLA support ended after TensorRT 10.7 (TensorRT 11.x docs, "Working with DLA"); JetPack 6 ships 10.3.
"""

from __future__ import annotations

from edgepipe.preflight import Finding
from edgepipe.targets import TargetProfile, parse_version

# onnx op -> (TensorRT layer, Orin-only, key limits)
DLA_LAYERS: dict[str, tuple[str, bool, str]] = {
    "Conv": ("Convolution", False, "2D only; kernel and padding sizes limited"),
    "ConvTranspose": ("Deconvolution", False, "2D only; no padding/dilation beyond the DLA limits"),
    "Gemm": ("Fully connected", False, "constant weights only"),
    "MatMul": ("Fully connected", False, "only when the second input is a constant 2D weight"),
    "MaxPool": ("Pooling", False, "2D only; window [1, 8]"),
    "AveragePool": ("Pooling", False, "2D only; window [1, 8]"),
    "GlobalAveragePool": ("Pooling", False, "window [1, 8]: larger feature maps fall back to the GPU"),
    "GlobalMaxPool": ("Pooling", False, "window [1, 8]: larger feature maps fall back to the GPU"),
    "Relu": ("Activation", False, "2D only"),
    "Sigmoid": ("Activation", False, "2D only"),
    "Tanh": ("Activation", False, "2D only"),
    "Clip": ("Activation", False, "2D only; constant bounds"),
    "LeakyRelu": ("Activation", False, "2D only"),
    "PRelu": ("Parametric ReLU", False, "slope must be a build-time constant"),
    "BatchNormalization": ("Scale", False, "folded into the preceding convolution or a Scale layer"),
    "Add": ("ElementWise", False, "operands of the same shape or channel-broadcast"),
    "Sub": ("ElementWise", False, ""),
    "Mul": ("ElementWise", False, ""),
    "Max": ("ElementWise", False, ""),
    "Min": ("ElementWise", False, ""),
    "Div": ("ElementWise", True, ""),
    "Pow": ("ElementWise", True, ""),
    "Equal": ("Comparison", True, ""),
    "Greater": ("Comparison", True, ""),
    "Less": ("Comparison", True, ""),
    "Concat": ("Concatenation", False, "channel axis only"),
    "LRN": ("LRN", False, "window 3, 5, 7 or 9"),
    "Resize": ("Resize", True, "nearest or bilinear, 4D"),
    "Upsample": ("Resize", True, "nearest or bilinear, 4D"),
    "Abs": ("Unary", True, ""),
    "Slice": ("Slice", True, "static, 4D"),
    "Softmax": ("SoftMax", True, "4D; channel axis"),
    "Reshape": ("Shuffle", True, "4D; static"),
    "Transpose": ("Shuffle", True, "4D; static"),
    "Flatten": ("Shuffle", True, "4D; static"),
}
# Nodes the parser folds into weights or no layer at all: no finding either way.
NO_LAYER = {"Constant", "Identity", "Dropout", "Shape", "QuantizeLinear", "DequantizeLinear"}
LAST_TENSORRT_WITH_DLA = (10, 7)


def check_dla(
    op_types: dict[str, int], target: TargetProfile, precision: str | None, tensorrt: str
) -> list[Finding]:
    """Findings for a `--dla` build: precision and TensorRT rules, then which op types stay on the GPU."""
    findings: list[Finding] = []
    if precision == "fp32":
        findings.append(
            Finding("error", "dla", "DLA runs FP16 or INT8 only; build with --precision fp16 or int8")
        )
    if parse_version(tensorrt)[:2] > LAST_TENSORRT_WITH_DLA:
        findings.append(
            Finding("error", "dla", f"TensorRT {tensorrt} has no DLA support (last release with DLA: 10.7)")
        )
    orin_dla = target.compute_capability >= (8, 7)
    gpu_ops: list[str] = []
    for op_type, count in sorted(op_types.items()):
        if op_type in NO_LAYER:
            continue
        layer = DLA_LAYERS.get(op_type)
        if layer is None:
            gpu_ops.append(f"{op_type} ×{count}")
            continue
        layer_name, orin_only, limits = layer
        if orin_only and not orin_dla:
            gpu_ops.append(f"{op_type} ×{count} (DLA {layer_name} needs Orin)")
        elif limits:
            findings.append(Finding("info", "dla", f"{op_type} → DLA {layer_name}: {limits}", op_type))
    if gpu_ops:
        findings.append(
            Finding(
                "warning",
                "dla",
                "not DLA layers, these run on the GPU (build with --gpu-fallback, "
                f"or the build fails): {', '.join(gpu_ops)}",
            )
        )
    return findings
