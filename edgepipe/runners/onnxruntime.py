"""onnxruntime runner: the CPU fallback (and a reference for TensorRT's explicit-precision graphs).

Imports nothing from torch, so it runs in a deploy bundle on a device without PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.errors import EdgepipeError
from edgepipe.runners.base import Runner, TensorSpec


def _dimension(value) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


# onnxruntime's type strings -> numpy dtype names (what a feed is cast to).
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
              "tensor(bool)": "bool"}


def _spec(meta) -> TensorSpec:
    return TensorSpec(meta.name, tuple(_dimension(d) for d in meta.shape), _ORT_TYPES.get(meta.type, "float32"))


class OrtRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, model_path: Path, providers: list[str] | None = None, threads: int | None = None) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.requested_providers = providers or ["CPUExecutionProvider"]
        self.threads = threads

    def open(self) -> None:
        import onnxruntime as ort

        if not self.model_path.is_file():
            raise EdgepipeError(f"ONNX model not found: {self.model_path}")
        available = ort.get_available_providers()
        missing = [p for p in self.requested_providers if p not in available]
        if missing:
            raise EdgepipeError(f"requested provider {', '.join(missing)}; available: {', '.join(available)}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.model_path), options, providers=self.requested_providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise EdgepipeError(f"{self.model_path}: onnxruntime cannot load it as ONNX ({first})") from None
        self._inputs = [_spec(meta) for meta in self.session.get_inputs()]
        self._outputs = [_spec(meta) for meta in self.session.get_outputs()]

    def close(self) -> None:
        # Free the session and its intra-op thread pool now, not whenever the runner is garbage collected:
        # bench and eval open one backend after another on the same few cores.
        self.session = None

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @property
    def device(self) -> str:
        return ",".join(self.session.get_providers()) if self._opened else "cpu"

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [spec.name for spec in self._outputs]
        return dict(zip(names, self.session.run(names, feed), strict=True))
