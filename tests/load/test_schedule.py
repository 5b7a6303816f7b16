"""Arrival schedules: determinism, chunking, bounds, statistical shape and CLI-style parsing."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelcaliper.errors import UsageError
from modelcaliper.load import (
    Bursty,
    Constant,
    Poisson,
    Schedule,
    Steps,
    parse_arrival,
    split_for_workers,
)

# Statistical properties run on fixed hypothesis examples so that a run is reproducible.
STATS = settings(max_examples=25, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def ks_statistic_exponential(samples: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance between the samples and Exp(1)."""
    x = np.sort(samples)
    n = len(x)
    cdf = -np.expm1(-x)
    above = np.arange(1, n + 1) / n - cdf
    below = cdf - np.arange(n) / n
    return float(max(above.max(), below.max()))


def ks_critical(n: int, alpha: float = 0.001) -> float:
    """Asymptotic KS critical value c(α)/√n with c(α) = √(−ln(α/2)/2)."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) / math.sqrt(n)


ALL_SCHEDULES = [
    Constant(50.0),  # evenly spaced
    Poisson(50.0),  # exponential gaps
    Bursty(20.0, 5.0, 0.5, 2.0),  # calm 20/s, bursts of 100/s
    Steps(((1.0, 10.0), (0.5, 0.0), (2.0, 80.0))),  # ramp with a pause stage
]


# --- the tiny interface -------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_every_schedule_meets_the_protocol(schedule):
    assert isinstance(schedule, Schedule)
    offsets = schedule.arrivals(3.0, rng(1))
    assert offsets.dtype == np.float64
    assert np.all(np.diff(offsets) >= 0)
    assert offsets.min() >= 0 and offsets.max() < 3.0
    described = schedule.describe()
    assert described["arrival"] == type(schedule).__name__.lower()
    assert described["mean_rate_per_s"] > 0


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
@given(seed=SEEDS, chunk=st.integers(min_value=1, max_value=5000),
       max_count=st.none() | st.integers(min_value=0, max_value=400))
@settings(max_examples=30, deadline=None)
def test_chunks_concatenate_to_the_same_schedule(schedule, seed, chunk, max_count):
    whole = schedule.arrivals(3.0, rng(seed), max_count)
    parts = list(schedule.iter_arrivals(3.0, rng(seed), max_count, chunk=chunk))
    assert all(0 < len(p) <= chunk for p in parts)
    joined = np.concatenate(parts) if parts else np.empty(0)
    assert np.array_equal(whole, joined)  # bit for bit, whatever the chunk size
    if max_count is not None:
        assert len(whole) <= max_count


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
@given(seed=SEEDS)
@settings(max_examples=20, deadline=None)
def test_same_seed_gives_the_same_schedule(schedule, seed):
    assert np.array_equal(schedule.arrivals(5.0, rng(seed)), schedule.arrivals(5.0, rng(seed)))


@pytest.mark.parametrize("schedule", [Poisson(50.0), Bursty(20.0, 5.0, 0.5, 2.0)],
                         ids=["Poisson", "Bursty"])
@given(seed=SEEDS)
@settings(max_examples=20, deadline=None)
def test_different_seeds_give_different_schedules(schedule, seed):
    a = schedule.arrivals(5.0, rng(seed))
    b = schedule.arrivals(5.0, rng(seed + 1))
    assert len(a) != len(b) or not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("duration_s", "max_count", "expected"),
    [
        (1.0, None, 10),  # duration bound: offsets 0.0 .. 0.9
        (None, 7, 7),  # count bound alone on an open-ended process
        (1.0, 3, 3),  # the count comes first
        (0.25, 100, 3),  # the duration comes first: 0.0, 0.1, 0.2
        (0.0, None, 0),  # nothing fits in no time
        (1.0, 0, 0),  # zero requests asked for
    ],
)
def test_generation_stops_at_the_first_bound(duration_s, max_count, expected):
    assert len(Constant(10.0).arrivals(duration_s, rng(0), max_count)) == expected


def test_open_ended_process_needs_a_bound():
    with pytest.raises(UsageError, match="duration or a request count"):
        Poisson(10.0).arrivals(None, rng(0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Poisson(10.0).arrivals(-1.0, rng(0)), "duration_s must be ≥ 0"),
        (lambda: Poisson(10.0).arrivals(1.0, rng(0), -3), "max_count must be a whole number"),
        (lambda: list(Poisson(10.0).iter_arrivals(1.0, rng(0), chunk=0)), "chunk must be ≥ 1"),
        (lambda: Poisson(0.0), "rate_per_s must be > 0, got 0"),
        (lambda: Constant(float("nan")), "rate_per_s must be a finite number"),
        (lambda: Bursty(10.0, 0.0, 1.0, 1.0), "burst_multiplier must be > 0"),
        (lambda: Steps(()), "at least one"),
        (lambda: Steps(((1.0, 0.0),)), "at least one stage must have a rate_per_s > 0"),
        (lambda: Steps(((1.0, -2.0),)), "stage 1 rate_per_s must be ≥ 0"),
        (lambda: split_for_workers(np.arange(3.0), 0), "n_workers must be a whole number ≥ 1"),
    ],
)
def test_invalid_values_are_usage_errors(call, message):
    with pytest.raises(UsageError, match=message):
        call()


# --- constant and steps ---------------------------------------------------------------------


def test_constant_is_exactly_evenly_spaced():
    offsets = Constant(4.0).arrivals(10.0, rng(0))
    assert np.array_equal(offsets, np.arange(40) / 4.0)


@pytest.mark.parametrize(
    ("stages", "expected_counts"),
    [
        (((2.0, 5.0),), [10]),  # one stage: 2 s at 5/s
        (((1.0, 10.0), (1.0, 30.0)), [10, 30]),  # a two-step ramp
        (((1.0, 10.0), (3.0, 0.0), (1.0, 4.0)), [10, 0, 4]),  # a pause in between
        (((0.35, 10.0),), [4]),  # 0.0, 0.1, 0.2, 0.3 — a partial period still fires
    ],
)
def test_steps_fire_each_stage_at_its_rate(stages, expected_counts):
    schedule = Steps(stages)
    offsets = schedule.arrivals(None, rng(0))  # None: the schedule's own length
    assert schedule.natural_duration_s == pytest.approx(sum(d for d, _ in stages))
    start = 0.0
    for (duration_s, rate_per_s), expected in zip(stages, expected_counts, strict=True):
        inside = offsets[(offsets >= start) & (offsets < start + duration_s)]
        assert len(inside) == expected
        if expected > 1:
            assert np.allclose(np.diff(inside), 1.0 / rate_per_s)
            assert inside[0] == pytest.approx(start)
        start += duration_s


def test_steps_are_cut_by_a_shorter_duration():
    offsets = Steps(((2.0, 10.0), (2.0, 20.0))).arrivals(3.0, rng(0))
    assert len(offsets) == 20 + 20 and offsets.max() < 3.0


# --- poisson ----------------------------------------------------------------------------------


@given(rate_per_s=st.floats(min_value=0.5, max_value=5000.0), seed=SEEDS)
@STATS
def test_poisson_rate_matches_over_a_long_window(rate_per_s, seed):
    duration_s = 40_000 / rate_per_s  # about 40 000 arrivals expected
    offsets = Poisson(rate_per_s).arrivals(duration_s, rng(seed))
    expected = rate_per_s * duration_s
    # Poisson count: standard deviation √expected; allow 5 of them.
    assert abs(len(offsets) - expected) < 5 * math.sqrt(expected)


@given(rate_per_s=st.floats(min_value=0.5, max_value=5000.0), seed=SEEDS)
@STATS
def test_poisson_gaps_pass_a_ks_test_against_the_exponential(rate_per_s, seed):
    offsets = Poisson(rate_per_s).arrivals(None, rng(seed), max_count=5000)
    gaps = np.diff(np.concatenate(([0.0], offsets))) * rate_per_s
    assert ks_statistic_exponential(gaps) < ks_critical(len(gaps))


def test_the_ks_check_rejects_gaps_that_are_not_exponential():
    # Evenly spaced gaps of the right mean must fail, or the test above proves nothing.
    gaps = np.diff(np.concatenate(([0.0], Constant(10.0).arrivals(500.0, rng(0))))) * 10.0
    assert ks_statistic_exponential(gaps) > ks_critical(len(gaps))


# --- bursty -----------------------------------------------------------------------------------


def test_bursty_mean_rate_formula():
    schedule = Bursty(10.0, 4.0, 1.0, 3.0)
    # base × (calm + mult × burst) / (calm + burst) = 10 × (3 + 4) / 4
    assert schedule.mean_rate_per_s == pytest.approx(17.5)
    assert schedule.burst_fraction == pytest.approx(0.25)
    assert Bursty.with_mean_rate(17.5, 4.0, 1.0, 3.0).base_rate_per_s == pytest.approx(10.0)


@given(
    multiplier=st.floats(min_value=2.0, max_value=10.0),
    mean_burst_s=st.floats(min_value=0.2, max_value=2.0),
    mean_calm_s=st.floats(min_value=0.2, max_value=5.0),
    seed=SEEDS,
)
@STATS
def test_bursty_time_in_burst_and_rate_ratio(multiplier, mean_burst_s, mean_calm_s, seed):
    schedule = Bursty(200.0, multiplier, mean_burst_s, mean_calm_s)
    duration_s = 3000 * (mean_burst_s + mean_calm_s)  # about 3000 calm/burst cycles
    offsets = schedule.arrivals(duration_s, rng(seed))
    periods = schedule.burst_periods(duration_s, rng(seed))
    burst_s = float((periods[:, 1] - periods[:, 0]).sum())
    # Share of time in bursts ≈ burst / (burst + calm); the estimate's sd is ~0.01 here.
    assert burst_s / duration_s == pytest.approx(schedule.burst_fraction, abs=0.05)
    # Arrivals inside the burst periods come multiplier times faster than outside them.
    where = np.searchsorted(periods[:, 0], offsets, side="right") - 1
    in_burst = (where >= 0) & (offsets < periods[np.maximum(where, 0), 1])
    burst_rate = in_burst.sum() / burst_s
    calm_rate = (~in_burst).sum() / (duration_s - burst_s)
    assert calm_rate == pytest.approx(200.0, rel=0.03)
    assert burst_rate / calm_rate == pytest.approx(multiplier, rel=0.05)
    assert len(offsets) / duration_s == pytest.approx(schedule.mean_rate_per_s, rel=0.1)


def test_bursty_gaps_within_one_state_are_exponential():
    # Within calm periods the process is Poisson at the base rate.
    schedule = Bursty(100.0, 5.0, 1.0, 50.0)
    offsets = schedule.arrivals(2000.0, rng(3))
    periods = schedule.burst_periods(2000.0, rng(3))
    edges = np.concatenate(([0.0], periods.ravel(), [2000.0])).reshape(-1, 2)
    gaps = []
    for start, end in edges:  # the calm periods
        inside = offsets[(offsets >= start) & (offsets < end)]
        gaps.append(np.diff(inside))
    calm_gaps = np.concatenate(gaps) * 100.0
    assert ks_statistic_exponential(calm_gaps) < ks_critical(len(calm_gaps))


# --- workers and speed ------------------------------------------------------------------------


@given(n=st.integers(min_value=0, max_value=500), workers=st.integers(min_value=1, max_value=9))
def test_worker_shares_are_disjoint_and_cover_the_schedule(n, workers):
    offsets = np.sort(np.random.default_rng(n).random(n))
    shares = split_for_workers(offsets, workers)
    assert len(shares) == workers
    assert sum(len(s) for s in shares) == n
    assert np.array_equal(np.sort(np.concatenate(shares)), offsets)
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    for i, share in enumerate(shares):
        assert np.array_equal(share, offsets[i::workers])  # round robin by index
        assert np.all(np.diff(share) >= 0)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [Constant(10_000.0), Poisson(10_000.0),
                                      Bursty.with_mean_rate(10_000.0, 5.0, 1.0, 9.0)],
                         ids=["Constant", "Poisson", "Bursty"])
def test_one_hour_at_ten_thousand_per_second_is_fast(schedule):
    start = time.perf_counter()
    offsets = schedule.arrivals(3600.0, rng(7))
    elapsed_s = time.perf_counter() - start
    assert len(offsets) == pytest.approx(36_000_000, rel=0.05)
    assert elapsed_s < 6.0, f"{type(schedule).__name__}: {elapsed_s:.2f} s for 36 M offsets"


# --- parse_arrival ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("constant", {"rps": 20}, Constant(20.0)),  # numbers pass through
        ("Poisson", {"rps": "12.5"}, Poisson(12.5)),  # case-insensitive name, numeric text
        ("steps", {"steps": "30s@10, 1m@50"}, Steps(((30.0, 10.0), (60.0, 50.0)))),  # durations
        ("steps", {"steps": [(1, 2), ("500ms", 0)]}, Steps(((1.0, 2.0), (0.5, 0.0)))),  # pairs
        ("bursty", {"rps": 14, "burst_multiplier": 5, "burst_duration": "1s",
                    "calm_duration": "9s"}, Bursty(10.0, 5.0, 1.0, 9.0)),  # rps is the mean
    ],
)
def test_parse_arrival_builds_schedules(name, params, expected):
    built = parse_arrival(name, **params)
    assert type(built) is type(expected)
    if isinstance(expected, Steps):
        assert built == expected
    else:
        assert built.describe() == pytest.approx(expected.describe())


def test_parse_arrival_bursty_defaults():
    built = parse_arrival("bursty", rps=30)
    assert isinstance(built, Bursty)
    assert built.mean_rate_per_s == pytest.approx(30.0)
    assert (built.burst_multiplier, built.mean_burst_s, built.mean_calm_s) == (5.0, 1.0, 9.0)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("poisson", {"rps": -5}, "--rps must be > 0, got -5"),  # the example from the CLI
        ("constant", {"rps": "fast"}, "--rps must be a number, got 'fast'"),  # not a number
        ("poisson", {}, "--arrival poisson needs --rps"),  # missing required value
        ("uniform", {"rps": 1}, "--arrival must be one of constant, poisson"),  # unknown process
        ("poisson", {"steps": "1s@1"}, "--steps does not apply to --arrival poisson"),  # foreign
        ("bursty", {"rps": 5, "burst_multiplier": 0}, "--burst-multiplier must be > 0"),
        ("bursty", {"rps": 5, "calm_duration": "soon"}, "--calm-duration must look like"),
        ("steps", {"steps": "30s"}, "--steps must look like 30s@10,1m@50"),  # no rate
        ("steps", {"steps": "30s@-1"}, "--steps rates must be ≥ 0"),  # negative rate
        ("replay", {"replay": "x.csv", "replay_speed": 0}, "--replay-speed must be > 0"),
    ],
)
def test_parse_arrival_errors_name_the_flag(name, params, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_arrival(name, **params)
