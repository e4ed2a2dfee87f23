"""bench's time budget (bench/budget.py): the plan fits the budget from the probe's costs and says every cut; bench
prints plain progress lines when its output is piped."""

from __future__ import annotations

import json
from pathlib import Path

from test_bench import _app, make_tiny_run
from typer.testing import CliRunner

from edgepipe.bench.budget import MIN_ITERS, MIN_SECONDS, PairCost, Plan, estimate, plan_run


def _asked(**changes) -> Plan:
    values = {"repeats": 3, "iters": 100, "seconds": 0.5, "warmup": 10, "warmup_seconds": 0.2, "tune_settings": True,
              "end_to_end": True, "memory": True, "batch_sizes": [1, 8, 64], "score_samples": None,
              "budget_s": 120.0}
    return Plan(**{**values, **changes})


def _resnet18_at_224(pairs: int = 8, scored: int = 0) -> list[PairCost]:
    """A 224 px ResNet-18 on 2 cores: ~25 ms a sample, 8 (artifact, runtime) pairs, half of them on OpenVINO."""
    return [PairCost(f"pair{index}", {1: 0.025, 8: 0.18, 64: 1.4}, open_s=0.5, candidates={1: 2, 8: 3, 64: 3},
                     score_samples=scored if index % 2 else 0) for index in range(pairs)]


def test_a_cheap_run_is_left_as_asked() -> None:
    tiny = [PairCost("mlp", {1: 1e-5, 8: 2e-5}, candidates={1: 2, 8: 2})]
    plan = plan_run(_asked(batch_sizes=[1, 8]), tiny)
    assert plan.shrunk == [] and plan.repeats == 3 and plan.iters == 100 and plan.tune_settings
    assert plan.estimate_s <= 120


def test_a_big_model_is_shrunk_in_order_to_fit_and_every_cut_is_said() -> None:
    pairs = _resnet18_at_224(scored=1000)
    asked = _asked()
    assert estimate(asked, pairs) > 600  # as asked, the 224 px model would take more than ten minutes
    plan = plan_run(asked, pairs, spent_s=10.0)
    assert plan.estimate_s <= 110.0  # the budget less what opening and probing already spent
    assert plan.repeats < 3 and plan.iters >= MIN_ITERS and plan.seconds >= MIN_SECONDS
    assert not plan.tune_settings
    assert 1 in plan.batch_sizes and 64 not in plan.batch_sizes  # the largest batch goes, the deploy batch stays
    said = "; ".join(plan.shrunk)
    for cut in ("repeats 3 ->", "windows 100 calls/0.5 s ->", "settings probe skipped", "batch sizes 64 dropped",
                "of 1000 test samples"):
        assert cut in said
    assert plan.to_json()["shrunk"] == plan.shrunk and "--budget" in plan.summary()


def test_a_bigger_budget_cuts_less() -> None:
    pairs = _resnet18_at_224(scored=1000)
    small, large = plan_run(_asked(budget_s=120.0), pairs), plan_run(_asked(budget_s=1200.0), pairs)
    assert len(large.shrunk) < len(small.shrunk) and large.batch_sizes == [1, 8, 64]
    assert plan_run(_asked(budget_s=None), pairs).shrunk == []  # no budget: exactly what was asked


def test_scoring_is_capped_at_its_share_even_when_the_rest_fits() -> None:
    slow_scoring = [PairCost("ov", {1: 0.01}, candidates={1: 1}, score_samples=50_000)]
    plan = plan_run(_asked(batch_sizes=[1], repeats=1, iters=5, seconds=0.1, memory=False), slow_scoring)
    assert plan.score_samples is not None and plan.score_samples < 50_000
    assert any("of 50000 test samples" in cut and "eval keeps the full split" in cut for cut in plan.shrunk)


def test_a_plan_that_cannot_fit_says_so_at_its_floors() -> None:
    huge = [PairCost("big", {1: 5.0, 8: 40.0}, candidates={1: 2, 8: 2}) for _ in range(4)]
    plan = plan_run(_asked(batch_sizes=[1, 8], budget_s=30.0), huge)
    assert plan.batch_sizes == [1] and plan.repeats == 1 and plan.iters == MIN_ITERS
    assert "over the" in plan.shrunk[-1]


def test_bench_piped_prints_progress_lines_and_records_the_cuts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDGEPIPE_NO_PROGRESS", raising=False)
    run = make_tiny_run(tmp_path)
    # CliRunner's output is not a terminal, as under `| cat`; a 1 s budget forces cuts even on the tiny model
    result = CliRunner().invoke(_app(), [str(run), "--batch", "1,4", "--iters", "500", "--seconds", "1",
                                         "--repeats", "3", "--no-memory", "--backend", "onnxruntime", "--budget", "1",
                                         "--json"])
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("bench:")]
    assert any("round 1/" in line and "elapsed" in line and "left]" in line for line in progress), progress
    assert any("plan ~" in line and "to fit:" in line for line in progress), progress
    assert any(line.startswith("bench: done in") for line in progress), progress
    payload = json.loads(result.stdout)
    budget = payload["budget"]
    assert budget["budget_s"] == 1.0 and budget["shrunk"] and budget["asked"]["iters"] == 500
    assert payload["settings"]["repeats"] == budget["repeats"] < 3
    assert payload["notes"][0].startswith("time budget 1 s:")


def test_no_progress_lines_with_edgepipe_no_progress(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEPIPE_NO_PROGRESS", "1")
    run = make_tiny_run(tmp_path)
    result = CliRunner().invoke(_app(), [str(run), "--batch", "1", "--iters", "3", "--seconds", "0.01", "--repeats",
                                         "1", "--no-memory", "--backend", "onnxruntime", "--json"])
    assert result.exit_code == 0, result.output
    assert "round 1/1" not in result.stderr and "plan ~" in result.stderr  # the plan line is a result, not progress


def test_a_scoring_sample_is_the_first_samples_of_the_split_streamed_in_order() -> None:
    import numpy as np

    from edgepipe.data.base import Split
    from edgepipe.stages.evaluate import _first

    x = np.arange(50 * 2, dtype=np.float32).reshape(50, 2)
    split = Split(x, np.zeros(50, dtype=np.int64))
    head = _first(split, 23, len(split))
    assert head.sample_shape == (2,)
    streamed = np.concatenate(list(head.batches(10)))
    assert np.array_equal(streamed, x[:23])
    assert _first(split, 50, 50) is split and np.array_equal(_first(x, 7, 50), x[:7])


def test_a_batch_size_that_alone_overruns_the_budget_goes_without_costing_the_others() -> None:
    # measured shape (224 px ResNet-18 on 2 busy cores): 0.34 s a call at batch 1, so ~20 s at batch 64
    pairs = [PairCost(f"pair{index}", {1: 0.34, 64: 0.34 * 64}, open_s=0.5, candidates={1: 2, 64: 2})
             for index in range(3)]
    plan = plan_run(_asked(batch_sizes=[1, 64], iters=10, seconds=0.1, repeats=2, memory=False,
                           end_to_end=False), pairs)
    assert plan.batch_sizes == [1] and plan.tune_settings and plan.repeats == 2
    assert plan.shrunk == ["batch sizes 64 dropped"]
