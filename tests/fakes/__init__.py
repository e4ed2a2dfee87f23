"""Recording fakes of optional heavy dependencies (tensorrt, pycuda), used only in tests."""
