"""Recording fakes of optional heavy dependencies (tensorrt, libcudart), used only in tests."""
