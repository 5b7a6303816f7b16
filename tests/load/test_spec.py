"""LoadSpec: validation messages, derived values, and the plan (intended offsets) it yields."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.errors import UsageError
from modelcaliper.load.spec import LoadSpec, query_rows

BAD_SPECS = [
    # a rated process without a rate
    ({"arrival": "poisson"}, "needs --rps"),
    # rates must be positive and finite
    ({"rate_per_s": 0, "duration_s": 1}, "--rps must be a finite number > 0"),
    ({"rate_per_s": -3, "duration_s": 1}, "--rps must be a finite number > 0"),
    ({"rate_per_s": math.inf, "duration_s": 1}, "--rps must be a finite number > 0"),
    # steps carry their own rates
    ({"arrival": "steps", "rate_per_s": 5, "arrival_params": {"steps": "1s@5"}},
     "--rps does not apply to --arrival steps"),
    # unknown process
    ({"arrival": "sine", "rate_per_s": 5, "duration_s": 1}, "--arrival must be one of"),
    # an open-ended process needs a bound
    ({"rate_per_s": 5}, "give --duration"),
    # durations must be finite and non-negative; the timeout positive
    ({"rate_per_s": 5, "duration_s": -1}, "--duration must be a finite duration ≥ 0"),
    ({"rate_per_s": 5, "duration_s": 1, "timeout_s": 0}, "--timeout must be a finite duration > 0"),
    ({"rate_per_s": 5, "duration_s": 1, "warmup_s": math.nan}, "--warmup must be a finite"),
    # counts are whole numbers in range
    ({"rate_per_s": 5, "duration_s": 1, "batch_size": 0}, "--batch-size must be ≥ 1, got 0"),
    ({"rate_per_s": 5, "duration_s": 1, "batch_size": 2.5}, "--batch-size must be a whole"),
    ({"rate_per_s": 5, "duration_s": 1, "workers": 0}, "--workers must be ≥ 1"),
    ({"rate_per_s": 5, "duration_s": 1, "connections": True}, "--connections must be a whole"),
    # seeds are non-negative and below 2**63
    ({"rate_per_s": 5, "duration_s": 1, "seed": -1}, "--seed must be ≥ 0"),
    ({"rate_per_s": 5, "duration_s": 1, "data_seed": 2**64}, "--data-seed must be below 2**63"),
    # query settings need fan-out
    ({"rate_per_s": 5, "duration_s": 1, "deadline_s": 0.25}, "--deadline applies to fanned-out"),
    ({"rate_per_s": 5, "duration_s": 1, "per_query_concurrency": 2},
     "--per-query-concurrency applies"),
    ({"rate_per_s": 5, "duration_s": 1, "candidates": 10, "on_deadline": "cancel"},
     "--on-deadline cancel needs"),
    # choices
    ({"rate_per_s": 5, "duration_s": 1, "on_overload": "shed"}, "--on-overload must be"),
    ({"rate_per_s": 5, "duration_s": 1, "on_overload": "drop"}, "needs --max-in-flight"),
    ({"rate_per_s": 5, "duration_s": 1, "candidates": 4, "on_deadline": "later"},
     "--on-deadline must be wait or cancel"),
    # a warm-up as long as the schedule leaves nothing
    ({"arrival": "steps", "arrival_params": {"steps": "1s@5"}, "warmup_s": 1.0},
     "leaves nothing to measure"),
    # arrival parameters that do not belong to the process
    ({"rate_per_s": 5, "duration_s": 1, "arrival_params": {"burst_multiplier": 3}},
     "--burst-multiplier does not apply to --arrival constant"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_SPECS)
def test_invalid_specs_name_the_flag(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("*", r"\*").replace("+", r"\+")):
        LoadSpec(**kwargs)


def test_replay_file_is_read_at_construction(tmp_path) -> None:
    # a missing replay file fails when the spec is built, not when the run starts
    with pytest.raises(UsageError, match="cannot read replay file"):
        LoadSpec(arrival="replay", arrival_params={"replay": str(tmp_path / "none.csv")})


QUERY_ROWS = [
    (10, 4, (4, 4, 2)),  # the last request holds the rest
    (8, 4, (4, 4)),  # an exact multiple
    (3, 25, (3,)),  # fewer candidates than a batch: one small request
    (1000, 25, (25,) * 40),  # the demo shape
]


@pytest.mark.parametrize(("candidates", "batch", "rows"), QUERY_ROWS)
def test_query_rows(candidates: int, batch: int, rows: tuple[int, ...]) -> None:
    assert query_rows(candidates, batch) == rows
    spec = LoadSpec(rate_per_s=2, duration_s=1, candidates=candidates, batch_size=batch)
    assert spec.rows_per_request == rows
    assert spec.requests_per_unit == math.ceil(candidates / batch)
    assert spec.offered_rps == pytest.approx(2 * len(rows))


def test_plan_is_pure_and_seeded() -> None:
    spec = LoadSpec(arrival="poisson", rate_per_s=200, duration_s=2, seed=7)
    first, again = spec.plan(), spec.plan()
    assert np.array_equal(first.offsets_s, again.offsets_s)
    other = LoadSpec(arrival="poisson", rate_per_s=200, duration_s=2, seed=8).plan()
    assert not np.array_equal(first.offsets_s[:50], other.offsets_s[:50])
    # the data seed does not move the schedule
    data = LoadSpec(arrival="poisson", rate_per_s=200, duration_s=2, seed=7, data_seed=99)
    assert np.array_equal(first.offsets_s, data.plan().offsets_s)


def test_plan_bounds_by_time_and_warmup() -> None:
    plan = LoadSpec(rate_per_s=100, duration_s=2, warmup_s=0.5).plan()
    assert plan.warmup_units == 50
    assert plan.measured_units == 200
    assert plan.window_s == pytest.approx(2.0)
    assert plan.offsets_s[-1] < 2.5


def test_plan_bounds_by_count_counts_measured_units() -> None:
    # --requests counts measured units: warm-up ones come on top
    plan = LoadSpec(rate_per_s=100, warmup_s=0.1, max_requests=25).plan()
    assert plan.warmup_units == 10 and plan.measured_units == 25
    assert plan.window_s == pytest.approx(0.25)
    # a count reached before the duration ends the plan early
    plan = LoadSpec(rate_per_s=100, duration_s=10, max_requests=30).plan()
    assert len(plan.offsets_s) == 30
    # a duration reached before the count ends it too
    plan = LoadSpec(rate_per_s=100, duration_s=0.2, max_requests=1000).plan()
    assert len(plan.offsets_s) == 20


def test_steps_run_their_own_length() -> None:
    spec = LoadSpec(arrival="steps", arrival_params={"steps": "1s@10,1s@20"})
    plan = spec.plan()
    assert len(plan.offsets_s) == 30
    assert plan.window_s == pytest.approx(2.0)
    assert spec.offered_rps == pytest.approx(15.0)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(rate=st.floats(1, 500), duration=st.floats(0.05, 3), warmup=st.floats(0, 1),
       count=st.integers(0, 300), seed=st.integers(0, 2**32))
def test_plan_properties(rate: float, duration: float, warmup: float, count: int,
                         seed: int) -> None:
    spec = LoadSpec(arrival="poisson", rate_per_s=rate, duration_s=duration, warmup_s=warmup,
                    max_requests=count, seed=seed)
    try:
        plan = spec.plan()
    except UsageError:
        return  # nothing after the warm-up: refused with a message
    offsets = plan.offsets_s
    # sorted, within the bounds, warm-up a prefix
    assert np.all(np.diff(offsets) >= 0)
    assert offsets[-1] < warmup + duration
    assert np.all(offsets[: plan.warmup_units] < warmup)
    assert np.all(offsets[plan.warmup_units:] >= warmup)
    if count:
        assert plan.measured_units <= count
    assert plan.window_s <= duration + 1e-9
