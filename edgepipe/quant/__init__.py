"""Quantization: calibration sets, the two INT8 QDQ tracks, the TensorRT calibration cache, FP16, fallback, QAT."""
