"""Gates on a run: ``--assert 'p99<120ms'`` checked against the summary, as verdicts and JUnit XML.

Grammar, one assertion per ``--assert`` (spaces allowed between the parts)::

    METRIC OP VALUE[UNIT]          OP is one of  <  <=  >  >=  ==

    p99<120ms     error_rate<0.1%     deadline_miss_rate<1%     throughput>=200rps

Latency metrics need a time unit (``ms``, ``s``, ``us``); rates take ``%`` or a bare
fraction (``0.001``); throughputs take ``rps`` (``/s``) or a bare number. Every value is
compared in one canonical unit per kind — milliseconds, fractions, per second — which is
also what ``Verdict.actual`` holds and what the store keeps. ``error_rate``,
``timeout_rate`` and ``deadline_miss_rate`` use the store's definitions (``store.schema``),
so a stored verdict and a gate never disagree. A metric the run has no value for (no
request ended, no query had a deadline) fails its assertion and says why; one that can
never apply to the run (``deadline_miss_rate`` without ``--deadline``) is refused before any
load is sent (``check_applicable``).
"""

from __future__ import annotations

import difflib
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcaliper.errors import UsageError
from modelcaliper.store.schema import deadline_miss_rate_of, error_rate_of

__all__ = ["METRICS", "OPERATORS", "Assertion", "Metric", "Verdict", "check_applicable",
           "evaluate", "junit_xml", "parse_assertion", "parse_assertions", "write_junit"]

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12),
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}
"""The comparisons, longest first (the order the parser tries them)."""

_TIME_UNITS_MS = {"ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3}
_RATE_UNITS = {"": 1.0, "rps": 1.0, "/s": 1.0}
_ROWS_UNITS = {"": 1.0, "/s": 1.0, "rows/s": 1.0}
_RATIO_UNITS = {"": 1.0, "%": 1e-2}


def _get(document: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, Mapping):
            return None
        document = document.get(key)
    return document if isinstance(document, (int, float)) and not isinstance(document,
                                                                             bool) else None


def _timeout_rate(summary: Mapping[str, Any]) -> float | None:
    """Timeouts over the requests that were due (the store's error-rate denominator)."""
    requests = summary.get("requests") or {}
    due = int(requests.get("scheduled") or 0) - int(requests.get("cancelled") or 0)
    return int(requests.get("timeouts") or 0) / due if due > 0 else None


@dataclass(frozen=True)
class Metric:
    """A summary figure an assertion can name: its kind, units and where its value is."""

    name: str
    kind: str  # "latency" (ms), "ratio" (fraction) or "rate" (per second)
    description: str
    read: Callable[[Mapping[str, Any]], float | None]
    units: Mapping[str, float]
    needs: str | None = None  # "fanout" or "deadline": when the metric can have a value

    @property
    def display_unit(self) -> str:
        """The unit values of this metric are shown in."""
        if self.kind in ("latency", "ratio"):
            return "ms" if self.kind == "latency" else "%"
        return "rows/s" if self.name == "rows_per_s" else "rps"

    def format(self, value: float) -> str:
        """``value`` (canonical unit) as text in the display unit."""
        if self.kind == "ratio":
            return f"{value * 100:.4g}%"
        return f"{value:.4g} {self.display_unit}"


def _at(*path: str) -> Callable[[Mapping[str, Any]], float | None]:
    return lambda summary: _get(summary, *path)


def _build_metrics() -> dict[str, Metric]:
    metrics: dict[str, Metric] = {}
    for key, label in (("p50", "median"), ("p90", "90th percentile"),
                       ("p95", "95th percentile"), ("p99", "99th percentile"),
                       ("p999", "99.9th percentile"), ("max", "maximum"), ("mean", "mean")):
        metrics[key] = Metric(key, "latency", f"{label} request latency (from the intended "
                              "send time)", _at("latency_ms", key), _TIME_UNITS_MS)
        metrics[f"query_{key}"] = Metric(
            f"query_{key}", "latency", f"{label} query latency (fan-out: until its last "
            "request)", _at("queries", "latency_ms", key), _TIME_UNITS_MS, "fanout")
    metrics["error_rate"] = Metric(
        "error_rate", "ratio", "(errors + timeouts + model errors + dropped) / (scheduled − "
        "cancelled)", error_rate_of, _RATIO_UNITS)
    metrics["timeout_rate"] = Metric("timeout_rate", "ratio",
                                     "timeouts / (scheduled − cancelled)", _timeout_rate,
                                     _RATIO_UNITS)
    metrics["deadline_miss_rate"] = Metric(
        "deadline_miss_rate", "ratio", "queries that missed --deadline / queries",
        deadline_miss_rate_of, _RATIO_UNITS, "deadline")
    metrics["throughput"] = Metric("throughput", "rate", "successful model requests per second",
                                   _at("throughput", "ok_rps"), _RATE_UNITS)
    metrics["achieved_rps"] = Metric("achieved_rps", "rate", "model requests sent per second",
                                     _at("throughput", "achieved_rps"), _RATE_UNITS)
    metrics["rows_per_s"] = Metric("rows_per_s", "rate", "rows of successful requests per "
                                   "second", _at("throughput", "rows_per_s"), _ROWS_UNITS)
    metrics["schedule_lag_p99"] = Metric(
        "schedule_lag_p99", "latency", "99th percentile of the generator's lateness",
        _at("generator", "schedule_lag_ms", "p99"), _TIME_UNITS_MS)
    return metrics


METRICS: dict[str, Metric] = _build_metrics()
"""Every metric an assertion may name."""

_SHAPE = re.compile(r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op><=|>=|==|<|>)\s*"
                    r"(?P<value>\S.*?)\s*$")
_VALUE = re.compile(r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
                    r"\s*(?P<unit>[A-Za-zµ%/]*)$")


@dataclass(frozen=True)
class Assertion:
    """One parsed gate: metric, comparison and threshold (in the metric's canonical unit)."""

    expression: str
    metric: Metric
    op: str
    threshold: float

    def check(self, summary: Mapping[str, Any]) -> Verdict:
        """The verdict of this assertion on a run summary."""
        actual = self.metric.read(summary)
        expected = f"{self.op} {self.metric.format(self.threshold)}"
        if actual is None or not math.isfinite(actual):
            why = {"fanout": "the run had no fanned-out queries",
                   "deadline": "no query had a deadline"}.get(self.metric.needs or "",
                                                               "no request ended")
            return Verdict(self, False, None,
                           f"{self.metric.name} has no value ({why}), expected {expected}")
        passed = OPERATORS[self.op](actual, self.threshold)
        return Verdict(self, passed, actual, f"{self.metric.name} = "
                       f"{self.metric.format(actual)}, expected {expected}")


@dataclass(frozen=True)
class Verdict:
    """Whether an assertion held, the value it was checked against, and a one-line message."""

    assertion: Assertion
    passed: bool
    actual: float | None
    message: str

    @property
    def expression(self) -> str:
        """The assertion as written."""
        return self.assertion.expression

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (``expression``, ``passed``, ``actual`` are what the store keeps)."""
        return {"expression": self.expression, "passed": self.passed, "actual": self.actual,
                "metric": self.assertion.metric.name, "op": self.assertion.op,
                "threshold": self.assertion.threshold,
                "unit": {"latency": "ms", "ratio": "fraction"}.get(
                    self.assertion.metric.kind, "per_s"),
                "message": self.message}


def _fail(text: str, problem: str) -> UsageError:
    return UsageError(f"--assert {text!r}: {problem}")


def parse_assertion(text: str) -> Assertion:
    """Parse ``METRIC OP VALUE[UNIT]``; a UsageError naming the token and the fix otherwise."""
    raw = str(text)
    shape = _SHAPE.match(raw)
    if shape is None:
        hint = " ('=' compares nothing: write '==')" if re.search(r"[^<>=!]=[^=]", raw) else ""
        raise _fail(raw, "write METRIC OP VALUE, e.g. 'p99<120ms' (OP: < <= > >= ==)" + hint)
    name, op, value_text = shape["metric"], shape["op"], shape["value"]
    metric = METRICS.get(name.lower())
    if metric is None:
        close = difflib.get_close_matches(name.lower(), list(METRICS), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of {', '.join(METRICS)}"
        raise _fail(raw, f"unknown metric '{name}'; {hint}")
    value = _VALUE.match(value_text)
    if value is None:
        example = {"latency": "120ms", "ratio": "0.1%", "rate": "200rps"}[metric.kind]
        raise _fail(raw, f"'{value_text}' is not a number with a unit; write e.g. {example}")
    number, unit = float(value["num"]), value["unit"].lower().replace("µs", "us")
    if unit not in metric.units:
        raise _fail(raw, _unit_problem(metric, unit))
    threshold = number * metric.units[unit]
    if metric.kind == "ratio" and not 0.0 <= threshold <= 1.0:
        raise _fail(raw, f"{metric.name} is a share between 0 and 1 (0% and 100%), got "
                         f"{value_text}")
    if metric.kind != "ratio" and threshold < 0:
        raise _fail(raw, f"{metric.name} cannot be negative, got {value_text}")
    return Assertion(f"{name}{op}{value_text}", metric, op, threshold)


def _unit_problem(metric: Metric, unit: str) -> str:
    if metric.kind == "latency":
        if not unit:
            return f"'{metric.name}' is a time: give a unit, e.g. 120ms (ms, s or us)"
        return f"'{unit}' is not a time unit; use ms, s or us"
    if metric.kind == "ratio":
        return f"'{unit}' is not a unit of {metric.name}; write a percentage (1%) or a fraction " \
               "(0.01)"
    allowed = "rows/s or a bare number" if "rows" in metric.name else "rps or a bare number"
    return f"'{unit}' is not a unit of {metric.name}; use {allowed}"


def parse_assertions(texts: Iterable[str] | None) -> tuple[Assertion, ...]:
    """Parse every ``--assert`` given (none: an empty tuple)."""
    return tuple(parse_assertion(text) for text in (texts or ()))


def check_applicable(assertions: Sequence[Assertion], *, fanout: bool,
                     deadline: bool) -> None:
    """Refuse, before any load, an assertion on a figure this run can never have."""
    for assertion in assertions:
        needs = assertion.metric.needs
        if needs == "fanout" and not fanout:
            raise _fail(assertion.expression, f"{assertion.metric.name} needs fanned-out "
                        "queries; add --candidates K")
        if needs == "deadline" and not deadline:
            raise _fail(assertion.expression, f"{assertion.metric.name} needs a query deadline;"
                        " add --candidates K --deadline DUR")


def evaluate(assertions: Sequence[Assertion], summary: Mapping[str, Any]) -> list[Verdict]:
    """Every assertion's verdict on ``summary``, in order."""
    return [assertion.check(summary) for assertion in assertions]


def junit_xml(verdicts: Sequence[Verdict], *, suite: str = "caliper run",
              properties: Mapping[str, Any] | None = None, time_s: float = 0.0,
              timestamp: str | None = None) -> str:
    """JUnit XML with one testcase per assertion; a failure says actual vs expected."""
    failures = sum(not v.passed for v in verdicts)
    root = ET.Element("testsuites", name="caliper", tests=str(len(verdicts)),
                      failures=str(failures), errors="0", time=f"{time_s:.3f}")
    attributes = {"name": suite, "tests": str(len(verdicts)), "failures": str(failures),
                  "errors": "0", "skipped": "0", "time": f"{time_s:.3f}"}
    if timestamp:
        attributes["timestamp"] = timestamp
    testsuite = ET.SubElement(root, "testsuite", attributes)
    if properties:
        props = ET.SubElement(testsuite, "properties")
        for key, value in properties.items():
            if value is not None:
                ET.SubElement(props, "property", name=str(key), value=str(value))
    for verdict in verdicts:
        case = ET.SubElement(testsuite, "testcase", classname="caliper.assertions",
                             name=verdict.expression, time="0")
        if verdict.passed:
            ET.SubElement(case, "system-out").text = verdict.message
        else:
            failure = ET.SubElement(case, "failure", message=verdict.message,
                                    type="AssertionFailed")
            failure.text = verdict.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def write_junit(path: str | Path, verdicts: Sequence[Verdict], **kwargs: Any) -> Path:
    """Write ``junit_xml(verdicts, **kwargs)`` to ``path`` (folders created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(junit_xml(verdicts, **kwargs), encoding="utf-8")
    return target
