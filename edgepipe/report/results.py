"""Typed stage results (in the manner of Polygraphy's RunResults): written into a stage's manifest.json by the stage
and read back as the same type by the command that shows them, so no reader digs a result out by string.

One vocabulary with eval's rows: ``name`` names the artifact, ``score`` and ``drop`` are on the test split against
the reference; what decided on val says so (``score_val``, ``drop_val``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Result(BaseModel):
    # extra="allow": a field a later edgepipe adds still reads back; nothing a manifest held is lost on a rewrite
    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="python", warnings=False)


class QuantizedArtifact(_Result):
    """One file quantize made, scored by the task against the FP32 graph it was made from."""

    name: str
    file: str
    precision: str
    track: str
    size_bytes: int
    score: float  # test split
    drop: float  # test split, in the task's unit, against the source ONNX
    score_val: float
    drop_val: float  # what the budget and the fallbacks decided on
    size_ratio: float | None = None
    speed_ratio: float | None = None
    int8: dict[str, Any] | None = None  # how much of it is INT8: quant.coverage.int8_coverage

    @model_validator(mode="before")
    @classmethod
    def _older_keys(cls, value: Any) -> Any:
        """Manifests written before the results were typed said score_test/drop_test; before tasks,
        accuracy_test/drop_pts_test (and their _val twins)."""
        if isinstance(value, dict) and "score" not in value:
            value = dict(value)
            for key, older in _OLDER_KEYS.items():
                found = next((name for name in older if name in value), None)
                if key not in value and found is not None:
                    value[key] = value.pop(found)
        return value


_OLDER_KEYS = {"score": ("score_test", "accuracy_test"), "drop": ("drop_test", "drop_pts_test"),
               "score_val": ("accuracy_val",), "drop_val": ("drop_pts_val",)}


class QuantizeResult(_Result):
    """What `edgepipe quantize` measured and decided (its manifest's ``metrics``)."""

    reference_fp32: dict[str, Any]  # the source ONNX: file, size_bytes, val and test scores
    task: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[QuantizedArtifact]
    speed: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per model at speed_batch: p50_ms, throughput...
    max_drop: float | None = None  # the run's whole budget against the original
    budget: dict[str, Any] | None = None  # quantize's share: edgepipe.tasks.budget.Budget.record
    fallback: dict[str, Any] = Field(default_factory=dict)  # the accuracy fallback: nodes kept in float, sensitivity
    cpu_speed_fallback: dict[str, Any] | None = None
    fp16_overflow: dict[str, Any] | None = None
    cpu: dict[str, Any] = Field(default_factory=lambda: {"known": False})
    qat: dict[str, Any] | None = None
    naive: dict[str, Any] | None = None  # naive whole-graph INT8 beside the shipped INT8 on test: quant.naive.compare
    score_split: str | None = None

    def row(self, name: str) -> QuantizedArtifact:
        return next(row for row in self.artifacts if row.name == name)
