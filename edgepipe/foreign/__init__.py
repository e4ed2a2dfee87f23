"""Models trained elsewhere: reading a stranger's ONNX file as data (onnx_file), and giving a YOLO export edgepipe's
detection outputs (decode)."""
