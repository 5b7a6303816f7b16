"""Capacity search on simulated targets: exponential growth, bisection, the knee."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.errors import UsageError
from modelcaliper.sweep.capacity import SearchSettings, Step, curve_of, knee, search_capacity


def queue(capacity: float, service_ms: float = 5.0):  # type: ignore[no-untyped-def]
    """A simulated single-server queue: latency grows as the load nears capacity, explodes past
    it; the SLO is p99 under 10 × the service time."""
    def measure(rate: float) -> Step:
        load = rate / capacity
        latency = service_ms / (1 - load) if load < 1 else service_ms * 1000 * load
        return Step(rate, latency < 10 * service_ms, latency, min(rate, capacity))
    return measure


@pytest.mark.parametrize(("capacity", "start"), [
    # start below: double until it fails, then bisect
    (200.0, 10.0),
    # start above: halve until it holds, then bisect
    (30.0, 100.0),
    # the sustainable rate (144/s) just above a doubling (80, 160): bisection from 80
    (160.0, 10.0),
])
def test_the_search_brackets_the_capacity(capacity: float, start: float) -> None:
    # latency < 10 × service ⇔ load < 0.9: the sustainable rate is 0.9 × capacity
    truth = 0.9 * capacity
    found = search_capacity(queue(capacity), SearchSettings(start_rps=start, tolerance=0.05,
                                                            max_steps=20))
    assert found.capacity_rps is not None and found.high_rps is not None
    assert found.capacity_rps <= truth < found.high_rps
    assert found.high_rps / found.capacity_rps <= 1.05
    assert found.reason.startswith("bracketed within")
    assert len(found.steps) <= 12


def test_growth_then_bisection_in_order() -> None:
    tried: list[float] = []

    def measure(rate: float) -> Step:
        tried.append(rate)
        return Step(rate, rate <= 50.0)

    found = search_capacity(measure, SearchSettings(start_rps=10.0, tolerance=0.1))
    assert tried[:4] == [10.0, 20.0, 40.0, 80.0]
    # geometric means from [40, 80) down to a 10 % bracket
    assert tried[4] == pytest.approx(math.sqrt(40 * 80))
    assert found.low_rps == pytest.approx(max(r for r in tried if r <= 50.0))
    assert found.high_rps == pytest.approx(min(r for r in tried if r > 50.0))
    assert found.high_rps / found.low_rps <= 1.1


@pytest.mark.parametrize(("passes_below", "search", "capacity", "reason"), [
    # nothing holds down to the floor: no capacity, said so
    (0.0, SearchSettings(start_rps=8.0, min_rps=1.0), None,
     "no rate down to 1/s met the SLO"),
    # everything holds up to --max-rps: the limit is the answer
    (1e9, SearchSettings(start_rps=10.0, max_rps=100.0), 100.0, "held up to --max-rps 100"),
    # the step budget runs out while still growing
    (1e9, SearchSettings(start_rps=1.0, max_steps=4), 8.0, "held at every rate tried (4 steps)"),
])
def test_limits_of_the_search(passes_below: float, search: SearchSettings,
                              capacity: float | None, reason: str) -> None:
    found = search_capacity(lambda rate: Step(rate, rate < passes_below), search)
    assert found.capacity_rps == capacity
    assert found.reason.startswith(reason)


def test_a_step_that_did_not_run_counts_as_a_failure() -> None:
    found = search_capacity(lambda rate: Step(rate, False, ran=rate < 30),
                            SearchSettings(start_rps=40.0, min_rps=5.0))
    assert found.capacity_rps is None
    assert [p["rate_per_s"] for p in found.curve()] == [5.0, 10.0, 20.0]


@given(capacity=st.floats(1.0, 5000.0), start=st.floats(0.5, 5000.0))
@settings(max_examples=200, deadline=None)
def test_any_monotone_target_is_bracketed_within_the_tolerance(capacity: float,
                                                               start: float) -> None:
    found = search_capacity(lambda rate: Step(rate, rate <= capacity),
                            SearchSettings(start_rps=start, tolerance=0.05, max_steps=40,
                                           min_rps=0.01))
    assert found.capacity_rps is not None and found.high_rps is not None
    assert found.capacity_rps <= capacity < found.high_rps
    assert found.high_rps / found.capacity_rps <= 1.05


def test_knee_of_a_latency_throughput_curve() -> None:
    measure = queue(100.0)
    steps = [measure(rate) for rate in (10, 30, 50, 70, 85, 95, 99)]
    point = knee(curve_of(steps))
    assert point is not None
    # the curve bends between 70 % and 95 % of capacity
    assert 70 <= point["rate_per_s"] <= 95
    # fewer than three points, or a flat curve: no knee
    assert knee(curve_of(steps[:2])) is None
    assert knee(curve_of([Step(r, True, 5.0) for r in (1, 2, 3)])) is None
    # a step without a latency is not a point of the curve
    assert knee(curve_of([Step(1, True, None), Step(2, True, 1.0), Step(3, True, 9.0)])) is None


@pytest.mark.parametrize(("settings_", "message"), [
    ({"start_rps": 0.0}, "--start-rps must be > 0"),
    ({"tolerance": 0.0}, "--capacity-tolerance must be a fraction between 0 and 1"),
    ({"max_steps": 1}, "--max-steps must be ≥ 2"),
    ({"growth": 1.0}, "growth factor must be > 1"),
    ({"start_rps": 50.0, "max_rps": 10.0}, "--max-rps 10 is below --start-rps 50"),
])
def test_bad_search_settings(settings_: dict[str, float], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        SearchSettings(**settings_)  # type: ignore[arg-type]
