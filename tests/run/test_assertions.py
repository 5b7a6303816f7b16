"""Assertions: the grammar, verdicts against summaries (the store's rates), JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcaliper.assertions import (
    METRICS,
    OPERATORS,
    check_applicable,
    evaluate,
    junit_xml,
    parse_assertion,
    parse_assertions,
)
from modelcaliper.errors import UsageError
from modelcaliper.store.schema import error_rate_of

PARSED = [
    # latency in ms, the canonical unit
    ("p99<120ms", "p99", "<", 120.0),
    # seconds and microseconds become ms; spaces are allowed
    ("p50 <= 0.25 s", "p50", "<=", 250.0),
    ("max<1500us", "max", "<", 1.5),
    ("p999<2µs", "p999", "<", 0.002),
    # percentages and bare fractions both give a fraction
    ("error_rate<0.1%", "error_rate", "<", 0.001),
    ("timeout_rate<=0.02", "timeout_rate", "<=", 0.02),
    ("deadline_miss_rate<1%", "deadline_miss_rate", "<", 0.01),
    # throughput in requests per second, with or without the unit
    ("throughput>=200rps", "throughput", ">=", 200.0),
    ("achieved_rps>10/s", "achieved_rps", ">", 10.0),
    ("rows_per_s>5000", "rows_per_s", ">", 5000.0),
    # query latency and the generator's lag
    ("query_p99<250ms", "query_p99", "<", 250.0),
    ("schedule_lag_p99<=1ms", "schedule_lag_p99", "<=", 1.0),
    # equality, and an upper-case metric name
    ("P90==3ms", "p90", "==", 3.0),
]


@pytest.mark.parametrize(("text", "metric", "op", "threshold"), PARSED)
def test_parses_metric_op_value_unit(text: str, metric: str, op: str, threshold: float) -> None:
    assertion = parse_assertion(text)
    assert (assertion.metric.name, assertion.op) == (metric, op)
    assert assertion.threshold == pytest.approx(threshold)


REFUSED = [
    # no comparison at all
    ("p99 120ms", "write METRIC OP VALUE"),
    # a single '=' is not a comparison
    ("p99=120ms", "write '=='"),
    # an unknown metric, with the closest one suggested
    ("p98<1ms", "unknown metric 'p98'; did you mean 'p99'?"),
    ("eror_rate<1%", "did you mean 'error_rate'?"),
    # latency needs a time unit
    ("p99<120", "'p99' is a time: give a unit, e.g. 120ms"),
    ("p99<120kb", "'kb' is not a time unit"),
    # a rate is a share
    ("error_rate<5ms", "write a percentage (1%) or a fraction (0.01)"),
    ("error_rate<150%", "a share between 0 and 1"),
    # not a number
    ("p99<fast", "'fast' is not a number with a unit; write e.g. 120ms"),
    # a throughput in a latency unit
    ("throughput>5ms", "use rps or a bare number"),
    # negative latency
    ("p99<-3ms", "cannot be negative"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_refusals_name_the_token_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_assertion(text)
    assert message in str(caught.value)
    assert f"--assert {text!r}" in str(caught.value)
    assert "\n" not in str(caught.value)


def summary(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "latency_ms": {"p50": 2.0, "p90": 4.0, "p95": 5.0, "p99": 87.5, "p999": 130.0,
                       "max": 140.0, "mean": 3.0},
        "requests": {"scheduled": 1000, "sent": 990, "ok": 990, "errors": 4, "timeouts": 2,
                     "dropped": 0, "cancelled": 10, "model_errors": 0},
        "throughput": {"achieved_rps": 210.0, "ok_rps": 205.0, "rows_per_s": 5125.0},
        "queries": {"count": 40, "deadline_misses": 1, "latency_ms": {"p99": 240.0}},
        "generator": {"schedule_lag_ms": {"p99": 0.4}},
    }
    base.update(overrides)
    return base


VERDICTS = [
    # 87.5 ms < 120 ms
    ("p99<120ms", True, 87.5),
    # 87.5 ms is not < 80 ms
    ("p99<80ms", False, 87.5),
    # the store's error rate: (4 + 2) / (1000 − 10)
    ("error_rate<1%", True, 6 / 990),
    ("error_rate<0.5%", False, 6 / 990),
    # timeouts over the same denominator
    ("timeout_rate<=0.2021%", True, 2 / 990),
    # 1 of 40 queries missed
    ("deadline_miss_rate<5%", True, 0.025),
    # throughput is successful requests per second
    ("throughput>=200rps", True, 205.0),
    ("throughput>=206rps", False, 205.0),
    ("query_p99<250ms", True, 240.0),
    ("schedule_lag_p99<=1ms", True, 0.4),
]


@pytest.mark.parametrize(("text", "passed", "actual"), VERDICTS)
def test_verdicts_against_a_summary(text: str, passed: bool, actual: float) -> None:
    (verdict,) = evaluate(parse_assertions([text]), summary())
    assert verdict.passed is passed
    assert verdict.actual == pytest.approx(actual)
    assert "expected" in verdict.message


def test_error_rate_is_the_store_definition() -> None:
    doc = summary()
    (verdict,) = evaluate(parse_assertions(["error_rate<1%"]), doc)
    assert verdict.actual == error_rate_of(doc)


def test_a_metric_without_a_value_fails_and_says_why() -> None:
    doc = summary(latency_ms={"p99": None}, queries=None)
    p99, misses = evaluate(parse_assertions(["p99<1s", "deadline_miss_rate<1%"]), doc)
    assert not p99.passed and p99.actual is None
    assert "no request ended" in p99.message
    assert not misses.passed and "no query had a deadline" in misses.message


def test_metrics_the_run_cannot_have_are_refused_before_the_run() -> None:
    check_applicable(parse_assertions(["p99<1s", "query_p99<1s"]), fanout=True, deadline=False)
    with pytest.raises(UsageError, match="add --candidates K"):
        check_applicable(parse_assertions(["query_p99<1s"]), fanout=False, deadline=False)
    with pytest.raises(UsageError, match="needs a query deadline"):
        check_applicable(parse_assertions(["deadline_miss_rate<1%"]), fanout=True,
                         deadline=False)


def test_junit_has_one_testcase_per_assertion_with_actual_and_expected() -> None:
    verdicts = evaluate(parse_assertions(["p99<120ms", "error_rate<0.1%"]), summary())
    root = ET.fromstring(junit_xml(verdicts, suite="caliper run r1",
                                   properties={"run_id": "r1", "model": None}, time_s=1.5))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["p99<120ms", "error_rate<0.1%"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "error_rate = 0.6061%, expected < 0.1%"
    # a property without a value is left out
    assert [p.get("name") for p in suite.iter("property")] == ["run_id"]


@given(metric=st.sampled_from(sorted(METRICS)), op=st.sampled_from(sorted(OPERATORS)),
       value=st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False,
                         allow_infinity=False), spaced=st.booleans())
def test_every_well_formed_assertion_parses_to_its_canonical_threshold(
        metric: str, op: str, value: object, spaced: bool) -> None:
    kind = METRICS[metric].kind
    unit, scale = {"latency": ("s", 1e3), "ratio": ("%", 1e-2), "rate": ("", 1.0)}[kind]
    if kind == "ratio" and float(str(value)) > 100:
        value = 100
    gap = " " if spaced else ""
    assertion = parse_assertion(f"{metric}{gap}{op}{gap}{value}{unit}")
    assert assertion.metric.name == metric and assertion.op == op
    assert assertion.threshold == pytest.approx(float(str(value)) * scale)
    # the verdict agrees with the comparison on the canonical value
    doc = summary()
    actual = METRICS[metric].read(doc)
    (verdict,) = evaluate([assertion], doc)
    assert verdict.passed == (actual is not None and OPERATORS[op](actual, assertion.threshold))
