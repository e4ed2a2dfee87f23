"""edgepipe: PyTorch training to optimized edge inference (prune, quantize, ONNX, TensorRT, onnxruntime)."""

__version__ = "0.1.0"
