"""The CPU track's latency-aware float fallback (quant/speed.py), with a scripted clock instead of timings."""

from __future__ import annotations

from pathlib import Path

from edgepipe.quant.speed import keep_float_where_faster

LAYERS = [("stem", "Conv"), ("conv1", "Conv"), ("fc", "Gemm")]


def _scripted(cost_int8: dict[str, float], cost_float: dict[str, float]):
    """A model is the set of float layers; its time is the sum of per-layer costs in that precision."""
    def build(excluded: list[str]) -> Path:
        return Path("+".join(sorted(excluded)) or "all-int8")

    def time_models(models: dict[str, Path]) -> dict[str, list[float]]:
        times = {}
        for label, path in models.items():
            floats = set(path.name.split("+")) if path.name != "all-int8" else set()
            times[label] = [sum(cost_float[n] if n in floats else cost_int8[n] for n, _ in LAYERS)] * 3
        return times

    return build, time_models


def test_keeps_only_the_layers_whose_float_version_is_clearly_faster() -> None:
    build, time_models = _scripted({"stem": 5.0, "conv1": 2.0, "fc": 1.0}, {"stem": 1.0, "conv1": 4.0, "fc": 1.05})
    found = keep_float_where_faster(LAYERS, [], build, time_models)
    assert found.kept_float == ["stem"]
    assert found.model == Path("stem")
    rows = {row["node"]: row for row in found.table}
    assert rows["stem"]["int8_ms"] == 8.0 and rows["stem"]["float_ms"] == 4.0 and rows["stem"]["kept_float"]
    assert rows["conv1"]["float_ms"] == 6.0 and not rows["conv1"]["kept_float"]  # measured on top of the stem choice
    assert not rows["fc"]["kept_float"]  # 1 % is noise, not a reason to give up int8


def test_layers_already_in_float_for_accuracy_are_not_probed_again() -> None:
    build, time_models = _scripted({"stem": 5.0, "conv1": 2.0, "fc": 1.0}, {"stem": 1.0, "conv1": 4.0, "fc": 1.0})
    found = keep_float_where_faster(LAYERS, ["conv1"], build, time_models)
    assert [row["node"] for row in found.table] == ["stem", "fc"]
    assert found.kept_float == ["stem"] and found.model == Path("conv1+stem")


def test_nothing_kept_when_int8_wins_everywhere() -> None:
    build, time_models = _scripted({"stem": 1.0, "conv1": 1.0, "fc": 1.0}, {"stem": 3.0, "conv1": 3.0, "fc": 3.0})
    found = keep_float_where_faster(LAYERS, [], build, time_models)
    assert found.kept_float == [] and found.model == Path("all-int8")


def test_one_lucky_round_is_not_evidence() -> None:
    """The float graph wins by 40 % on the median but loses one paired round (a slow phase): int8 stays."""
    def build(excluded: list[str]) -> Path:
        return Path("+".join(sorted(excluded)) or "all-int8")

    def time_models(models: dict[str, Path]) -> dict[str, list[float]]:
        return {"int8": [10.0, 10.0, 4.0], "float": [6.0, 6.0, 6.0]}

    found = keep_float_where_faster(LAYERS[:1], [], build, time_models)
    assert found.kept_float == [] and found.model == Path("all-int8")
    row = found.table[0]
    assert row["gain"] == 0.4 and row["worst_round_gain"] == -0.5 and not row["kept_float"]
