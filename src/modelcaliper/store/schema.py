"""What the run database holds: the ``runs`` columns, how a summary fills them, the sort whitelist.

The tables themselves are created and changed only by ``store.migrations``; this module names
the columns the code reads and writes at the latest schema version, and derives the indexed
figures of a run from its ``modelcaliper.run/1`` summary:

    created_at          summary.started_at, normalised to ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC)
    model, protocol,    summary.target.{model, protocol, url}
      target_url
    model_version,      given to ``save_run``, else summary.target.{version, kind}, else the
      target_kind       spec's ``model_version`` / ``target_kind`` (top level or under ``target``)
    encoding,           summary.pool.{encoding, compression}
      compression
    rate_per_s          load.settings.rate_per_s: the --rps asked for (queries/s with fan-out)
    batch_size, candidates, arrival, duration_s     summary.load
    p50_ms, p99_ms      latency_ms (every request that ended, from its intended send time)
    query_p99_ms        queries.latency_ms.p99 (fan-out runs)
    error_rate          (errors + timeouts + model_errors + dropped) / (scheduled − cancelled):
                        requests that were due and did not succeed, leaving out those the
                        client abandoned on purpose (deadline cancel, end of run, Ctrl-C)
    deadline_miss_rate  queries.deadline_misses / queries.count (with a deadline)
    achieved_rps        throughput.achieved_rps
    verdict             pass when every stored assertion passed, fail when one failed, else null

A statistic the summary does not have is null, never 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelcaliper.errors import UsageError

__all__ = ["LIST_COLUMNS", "RUN_COLUMNS", "SORT_COLUMNS", "AssertionResult", "StoredRun",
           "deadline_miss_rate_of", "error_rate_of", "normalise_time", "query_p99_of", "run_row"]

RUN_COLUMNS = (
    "run_id", "created_at", "model", "model_version", "protocol", "encoding", "compression",
    "target_kind", "target_url", "rate_per_s", "batch_size", "candidates", "arrival",
    "duration_s", "status", "reason", "verdict", "p50_ms", "p99_ms", "query_p99_ms",
    "error_rate", "deadline_miss_rate", "achieved_rps", "folder", "summary_json", "spec_json",
    "environment_json",
)
"""Every column of ``runs`` at the latest schema version, in table order."""

LIST_COLUMNS = tuple(c for c in RUN_COLUMNS if not c.endswith("_json"))
"""The columns a listing reads: all but the stored documents."""

SORT_COLUMNS = ("created_at", "run_id", "model", "model_version", "status", "verdict",
                "rate_per_s", "batch_size", "candidates", "duration_s", "p50_ms", "p99_ms",
                "query_p99_ms", "error_rate", "deadline_miss_rate", "achieved_rps")
"""The only columns ``list_runs`` sorts by; anything else is refused, never put into SQL."""


@dataclass(frozen=True)
class AssertionResult:
    """One gate of a run: its expression, whether it held, and the value it was checked against."""

    expression: str
    passed: bool
    actual: float | None = None

    @classmethod
    def coerce(cls, value: Any) -> AssertionResult:
        """An AssertionResult from itself, a mapping, an object with the same fields or a tuple."""
        if isinstance(value, AssertionResult):
            return value
        if isinstance(value, Mapping):
            fields = (value.get("expression"), value.get("passed"), value.get("actual"))
        elif isinstance(value, tuple):
            fields = tuple(value) + (None,) * (3 - len(value))
        else:
            fields = (getattr(value, "expression", None), getattr(value, "passed", None),
                      getattr(value, "actual", None))
        expression, passed, actual = fields[:3]
        if not isinstance(expression, str) or not expression.strip():
            raise UsageError(f"an assertion needs an expression, got {value!r}")
        if not isinstance(passed, bool):
            raise UsageError(f"assertion {expression!r}: passed must be true or false, "
                             f"got {passed!r}")
        if actual is not None:
            try:
                actual = float(actual)
            except (TypeError, ValueError):
                raise UsageError(f"assertion {expression!r}: actual must be a number, "
                                 f"got {actual!r}") from None
        return cls(expression.strip(), passed, actual)


@dataclass(frozen=True)
class StoredRun:
    """One row of ``runs`` with its tags and assertions; the documents are parsed when loaded."""

    run_id: str
    created_at: str
    model: str | None
    model_version: str | None
    protocol: str | None
    encoding: str | None
    compression: str | None
    target_kind: str | None
    target_url: str | None
    rate_per_s: float | None
    batch_size: int | None
    candidates: int | None
    arrival: str | None
    duration_s: float | None
    status: str
    reason: str | None
    verdict: str | None
    p50_ms: float | None
    p99_ms: float | None
    query_p99_ms: float | None
    error_rate: float | None
    deadline_miss_rate: float | None
    achieved_rps: float | None
    folder: str | None
    tags: tuple[str, ...] = ()
    assertions: tuple[AssertionResult, ...] = ()
    summary: dict[str, Any] | None = field(default=None, repr=False)
    spec: dict[str, Any] | None = field(default=None, repr=False)
    environment: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (assertions as dicts)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["tags"] = list(self.tags)
        out["assertions"] = [{"expression": a.expression, "passed": a.passed,
                              "actual": a.actual} for a in self.assertions]
        return out


def normalise_time(value: str | datetime) -> str:
    """An ISO 8601 time or datetime as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC), which sorts as text."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise UsageError(f"time must be ISO 8601 (e.g. 2026-11-27T04:15:00Z), "
                             f"got {value!r}") from None
    if not isinstance(value, datetime):
        raise UsageError(f"time must be an ISO 8601 string or a datetime, got {value!r}")
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _get(document: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, Mapping):
            return None
        document = document.get(key)
    return document


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _whole(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def query_p99_of(summary: Mapping[str, Any]) -> float | None:
    """p99 of the query latency (fan-out runs), in ms, or None."""
    return _number(_get(summary, "queries", "latency_ms", "p99"))


def error_rate_of(summary: Mapping[str, Any]) -> float | None:
    """Share of due requests that did not succeed, leaving out those cancelled on purpose."""
    requests = summary.get("requests") or {}
    failed = sum(int(requests.get(k) or 0)
                 for k in ("errors", "timeouts", "model_errors", "dropped"))
    due = int(requests.get("scheduled") or 0) - int(requests.get("cancelled") or 0)
    return failed / due if due > 0 else None


def deadline_miss_rate_of(summary: Mapping[str, Any]) -> float | None:
    """Share of queries that missed their deadline (fan-out runs with a deadline), or None."""
    misses, count = _get(summary, "queries", "deadline_misses"), _get(summary, "queries", "count")
    if misses is None or not count:
        return None
    return misses / count


def run_row(summary: Mapping[str, Any], *, status: str, reason: str | None = None,
            spec: Mapping[str, Any] | None = None, folder: str | None = None,
            model_version: str | None = None, target_kind: str | None = None,
            verdict: str | None = None, summary_json: str, spec_json: str | None = None,
            environment_json: str | None = None) -> dict[str, Any]:
    """The ``runs`` row of a summary (see the module docstring for where each value comes from)."""
    target, load, pool = (summary.get(k) or {} for k in ("target", "load", "pool"))
    spec = spec or {}
    started = summary.get("started_at")
    return {
        "run_id": str(summary["run_id"]),
        "created_at": normalise_time(started) if started else normalise_time(datetime.now(UTC)),
        "model": _text(target.get("model")),
        "model_version": _text(_first(model_version, target.get("version"),
                                      spec.get("model_version"),
                                      _get(spec, "target", "model_version"),
                                      _get(spec, "target", "version"))),
        "protocol": _text(target.get("protocol")),
        "encoding": _text(pool.get("encoding")),
        "compression": _text(pool.get("compression")),
        "target_kind": _text(_first(target_kind, target.get("kind"), spec.get("target_kind"),
                                    _get(spec, "target", "kind"))),
        "target_url": _text(target.get("url")),
        "rate_per_s": _number(_first(_get(load, "settings", "rate_per_s"),
                                     load.get("offered_qps"), load.get("offered_rps"))),
        "batch_size": _whole(load.get("batch_size")),
        "candidates": _whole(load.get("candidates")),
        "arrival": _text(load.get("arrival")),
        "duration_s": _number(load.get("duration_s")),
        "status": status,
        "reason": reason,
        "verdict": verdict,
        "p50_ms": _number(_get(summary, "latency_ms", "p50")),
        "p99_ms": _number(_get(summary, "latency_ms", "p99")),
        "query_p99_ms": query_p99_of(summary),
        "error_rate": error_rate_of(summary),
        "deadline_miss_rate": deadline_miss_rate_of(summary),
        "achieved_rps": _number(_get(summary, "throughput", "achieved_rps")),
        "folder": folder,
        "summary_json": summary_json,
        "spec_json": spec_json,
        "environment_json": environment_json,
    }
