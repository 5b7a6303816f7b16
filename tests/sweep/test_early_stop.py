"""Early stopping: stop when the percentile is known, or the SLO verdict is, never before."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.assertions import parse_assertions
from modelcaliper.errors import UsageError
from modelcaliper.load.live import LiveBatch
from modelcaliper.load.transport import Status
from modelcaliper.runner import ProgressSink
from modelcaliper.sweep.early_stop import (
    EarlyStop,
    RatioWatch,
    StopRule,
    Watch,
    watches_for,
    wilson_interval,
)

P99 = Watch("p99", 99.0, False)


def batch(latency_ms: np.ndarray, *, status: np.ndarray | None = None,
          warmup: np.ndarray | None = None, queries_ms: np.ndarray | None = None,
          missed: np.ndarray | None = None, first: int = 0, step_ms: float = 10.0) -> LiveBatch:
    """A live batch of finished requests (and queries) with the given latencies, the i-th
    intended ``(first + i) × step_ms`` into the run."""
    n = len(latency_ms)
    intended = np.rint((first + np.arange(n)) * step_ms * 1e6).astype(np.int64)
    done = intended + np.rint(latency_ms * 1e6).astype(np.int64)
    requests = {"intended_ns": intended, "dispatched_ns": intended, "done_ns": done,
                "status": (status if status is not None else np.zeros(n)).astype(np.int8),
                "warmup": warmup if warmup is not None else np.zeros(n, dtype=bool)}
    q = 0 if queries_ms is None else len(queries_ms)
    q_intended = np.rint((first + np.arange(q)) * step_ms * 1e6).astype(np.int64)
    queries = {"intended_ns": q_intended,
               "done_ns": q_intended + (np.rint(queries_ms * 1e6).astype(np.int64)
                                        if queries_ms is not None else 0),
               "missed": missed if missed is not None else np.zeros(q, dtype=bool),
               "warmup": np.zeros(q, dtype=bool)}
    return LiveBatch(0, n, requests, queries)


def lognormal(n: int, median_ms: float = 10.0, sigma: float = 0.3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(math.log(median_ms), sigma, n)


def test_stops_once_the_p99_is_known_within_the_precision() -> None:
    sink = EarlyStop(StopRule(precision=0.10, min_units=400), [P99])
    values = lognormal(20_000, sigma=0.2)
    stopped_at = None
    for i in range(0, len(values), 250):
        if sink.update(batch(values[i:i + 250], first=i)):
            stopped_at = i + 250
            break
    assert stopped_at is not None and 400 <= stopped_at < 20_000
    assert sink.rule_met == "precise"
    interval = sink.intervals["p99"]
    assert interval["relative_half_width"] <= 0.10
    assert interval["low"] <= np.percentile(values, 99) * 1.1
    assert sink.reason.startswith("known within ±10% after")


def test_never_before_the_minimum_count() -> None:
    # a distribution so tight that its p99 is known from a handful of samples
    sink = EarlyStop(StopRule(precision=0.5, min_units=1000), [P99])
    assert not sink.update(batch(np.full(999, 5.0)))
    assert sink.update(batch(np.full(1, 5.0), first=999))


def test_never_before_the_minimum_duration() -> None:
    # requests a millisecond apart: enough of them after 0.4 s, but not enough time
    sink = EarlyStop(StopRule(precision=0.5, min_units=400, min_duration_s=2.0), [P99])
    values = np.full(3000, 5.0)
    stopped_at = next(i for i in range(0, 3000, 100)
                      if sink.update(batch(values[i:i + 100], first=i, step_ms=1.0)))
    assert stopped_at == 2000  # the first batch reaching past 2 s (its last is 2.099 s in)
    assert sink.measured_s == pytest.approx(2.099)


@pytest.mark.parametrize(("threshold_ms", "verdict"), [
    # far above the tail: the SLO holds beyond doubt long before the p99 is precise
    (300.0, "every SLO is met beyond doubt"),
    # far below the median: it fails beyond doubt
    (5.0, "p99 fails the SLO beyond doubt"),
])
def test_stops_once_the_verdict_is_known(threshold_ms: float, verdict: str) -> None:
    watch = Watch("p99", 99.0, False, threshold_ms, "<")
    # a wide tail: ±1 % precision would take far more than these samples
    sink = EarlyStop(StopRule(precision=0.01, min_units=400), [watch])
    assert sink.update(batch(lognormal(500, sigma=0.8)))
    assert sink.rule_met == "decided"
    assert verdict in (sink.reason or "")


def test_no_verdict_stop_while_the_interval_straddles_the_limit() -> None:
    values = lognormal(600, sigma=0.8)
    near = float(np.percentile(values, 99))
    sink = EarlyStop(StopRule(precision=0.01, min_units=400),
                     [Watch("p99", 99.0, False, near, "<")])
    assert not sink.update(batch(values))
    # with verdict stopping off, even a clear verdict waits for the precision
    clear = EarlyStop(StopRule(precision=0.01, min_units=400, decide=False),
                      [Watch("p99", 99.0, False, 1000.0, "<")])
    assert not clear.update(batch(values))


def test_warm_up_and_cancelled_requests_are_not_counted() -> None:
    sink = EarlyStop(StopRule(precision=0.5, min_units=400), [P99])
    warm = np.ones(300, dtype=bool)
    assert not sink.update(batch(np.full(300, 5.0), warmup=warm))
    cancelled = np.full(300, int(Status.CANCELLED))
    assert not sink.update(batch(np.full(300, 5.0), status=cancelled, first=300))
    assert sink.requests.count == 0
    # errors and timeouts ended: they count, as in the summary's latency
    ended = np.array([int(Status.ERROR), int(Status.TIMEOUT)] * 200)
    assert sink.update(batch(np.full(400, 5.0), status=ended, first=600))


def test_an_error_rate_failed_beyond_doubt_stops_the_point() -> None:
    rule = StopRule(precision=0.01, min_units=100)
    ratio = RatioWatch("error_rate", 0.001, "<")
    status = np.where(np.arange(400) % 10 == 0, int(Status.ERROR), 0)
    sink = EarlyStop(rule, [P99], [ratio])
    assert sink.update(batch(lognormal(400, sigma=0.8), status=status))
    assert sink.rule_met == "decided"
    assert sink.reason.startswith("error_rate above its limit beyond doubt (40 of 400")
    # no errors at all cannot prove a rate below 0.1 %: the latency decides alone
    passing = EarlyStop(rule, [Watch("p99", 99.0, False, 1000.0, "<")], [ratio])
    assert passing.update(batch(lognormal(400, sigma=0.8)))
    assert passing.reason.startswith("every SLO is met")
    # a few errors, over the limit but not beyond doubt: no verdict stop yet
    some = np.where(np.arange(400) == 7, int(Status.ERROR), 0)
    unsure = EarlyStop(rule, [Watch("p99", 99.0, False, 1000.0, "<")], [ratio])
    assert not unsure.update(batch(lognormal(400, sigma=0.8), status=some))


def test_query_percentiles_watch_queries() -> None:
    watch = Watch("query_p99", 99.0, True, 250.0, "<")
    sink = EarlyStop(StopRule(min_units=400), [watch])
    assert not sink.update(batch(np.full(5000, 1.0)))  # requests do not count for queries
    assert sink.update(batch(np.empty(0), queries_ms=lognormal(450, 50.0, 0.2)))
    assert sink.reason.startswith("every SLO is met")


def test_abort_and_forwarding() -> None:
    seen: list[str] = []

    class Inner(ProgressSink):
        def start(self, spec: object, plan: object) -> None:
            seen.append("start")

        def update(self, batch: object) -> None:
            seen.append("update")

        def finish(self) -> None:
            seen.append("finish")

    reason: list[str] = []
    sink = EarlyStop(StopRule(), [P99], inner=Inner(), abort=lambda: reason[0] if reason
                     else None)
    sink.start(None, None)
    assert not sink.update(batch(np.full(10, 1.0)))
    reason.append("the server process exited with code 1")
    assert sink.update(batch(np.full(10, 1.0)))
    sink.finish()
    assert seen == ["start", "update", "update", "finish"]
    assert sink.rule_met == "aborted" and sink.reason == "the server process exited with code 1"
    # disabled: nothing stops a point but a dead server
    off = EarlyStop(StopRule(enabled=False, min_units=1), [P99])
    assert not off.update(batch(np.full(5000, 1.0)))


def test_watches_follow_the_slo() -> None:
    slo = parse_assertions(["p95<20ms", "query_p99<=250ms", "error_rate<0.1%", "mean<5ms",
                            "schedule_lag_p99<1ms"])
    watches, ratios = watches_for(slo, fanout=True)
    assert [(w.name, w.percentile, w.queries, w.threshold_ms, w.op) for w in watches] == [
        ("p95", 95.0, False, 20.0, "<"), ("query_p99", 99.0, True, 250.0, "<=")]
    assert ratios == (RatioWatch("error_rate", 0.001, "<"),)
    # without a latency SLO: the p99 of the unit
    assert watches_for((), fanout=False)[0] == (Watch("p99", 99.0, False),)
    assert watches_for((), fanout=True)[0] == (Watch("query_p99", 99.0, True),)


@pytest.mark.parametrize(("rule", "message"), [
    ({"precision": 0.0}, "--precision must be a fraction between 0 and 1"),
    ({"precision": 1.5}, "--precision must be a fraction between 0 and 1"),
    ({"min_units": 0}, "--min-requests must be ≥ 1"),
    ({"confidence": 1.0}, "--confidence must be between 0 and 1"),
])
def test_bad_rules_are_refused(rule: dict[str, float], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        StopRule(**rule)  # type: ignore[arg-type]


@given(n=st.integers(1, 5000), share=st.floats(0, 1))
@settings(max_examples=200, deadline=None)
def test_wilson_interval_holds_the_observed_share(n: int, share: float) -> None:
    hits = round(share * n)
    low, high = wilson_interval(hits, n)
    assert 0.0 <= low <= hits / n <= high <= 1.0
    narrower_low, narrower_high = wilson_interval(hits, n, 0.5)
    assert low <= narrower_low + 1e-12 and narrower_high <= high + 1e-12


def test_wilson_interval_covers_the_true_rate() -> None:
    # 2000 simulated runs of 400 requests at a 2 % error rate: about 95 % of the intervals
    # hold the truth
    rng = np.random.default_rng(5)
    hits = rng.binomial(400, 0.02, 2000)
    covered = sum(low <= 0.02 <= high for low, high in (wilson_interval(int(h), 400)
                                                         for h in hits))
    assert 0.93 <= covered / 2000 <= 0.98
