"""The recommendation: which configuration to run, a short ranked table, and why in one line.

Each *configuration* (everything but the rate) gets a **sustainable rate**: the highest rate
at which every SLO held, below the lowest rate at which one failed (a run that failed counts
as a failure at its rate). With ``--rps auto`` that is the capacity the search bracketed;
with fixed rates it is one of them. Without an SLO a point holds when it completed without
errors.

Ranking: by sustainable rate (highest first), ties by CPU per candidate (client + server,
least first). With a required rate (``--required-rps``), the configurations that sustain it
come first, by CPU per candidate. The headline names the winner with its figure and the
contrast that explains it, e.g.::

    batch 25 + v2-grpc gzip: p99 182 ms at 40 queries/s; v2-rest json fails p99<250ms above
    12 queries/s

When no configuration meets the SLO the recommendation says so and shows the closest point
(the one whose worst verdict is least over its limit).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelcaliper.sweep.plan import rate_text
from modelcaliper.sweep.results import PointResult

__all__ = ["ConfigOutcome", "recommend", "summarize_configs"]


@dataclass
class ConfigOutcome:
    """One configuration's runs and what they add up to."""

    key: str
    label: str
    results: list[PointResult] = field(default_factory=list)
    capacity: dict[str, Any] | None = None

    @property
    def ran(self) -> list[PointResult]:
        """Runs that were measured (completed or failed), by rate."""
        return sorted((r for r in self.results if r.status != "interrupted"),
                      key=lambda r: r.rate_per_s)

    def first_failure(self) -> PointResult | None:
        """The lowest-rate run at which the SLO failed (or the run itself failed)."""
        return next((r for r in self.ran if not r.passed), None)

    def held(self) -> PointResult | None:
        """The highest-rate run that held, below the first failure."""
        failure = self.first_failure()
        limit = failure.rate_per_s if failure is not None else math.inf
        held = [r for r in self.ran if r.passed and r.rate_per_s < limit]
        return held[-1] if held else None

    @property
    def sustainable_rps(self) -> float | None:
        """The sustainable rate (see the module docstring), None when no rate held."""
        held = self.held()
        return held.rate_per_s if held is not None else None

    def cpu_us_per_candidate(self, which: str = "cpu_us_per_candidate") -> float | None:
        """Client + server CPU per candidate (median over the configuration's runs).

        ``which`` picks another figure: ``client_cpu_us_per_candidate`` or
        ``server_cpu_us_per_candidate``.
        """
        values = [r.figures.get(which) for r in self.ran]
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    def describe(self, watch: str, fanout: bool) -> dict[str, Any]:
        """A JSON-ready record of the configuration for ``sweep.json``."""
        held, failure = self.held(), self.first_failure()
        return {"key": self.key, "label": self.label,
                "config": {k: v for k, v in (self.results[0].describe()["config"]
                                             if self.results else {}).items() if k != "rps"},
                "sustainable_rps": self.sustainable_rps,
                "sustainable": rate_text(self.sustainable_rps, fanout)
                if self.sustainable_rps is not None else None,
                "at": _brief(held, watch), "first_failure": _brief(failure, watch),
                "cpu_us_per_candidate": self.cpu_us_per_candidate(),
                "client_cpu_us_per_candidate":
                    self.cpu_us_per_candidate("client_cpu_us_per_candidate"),
                "server_cpu_us_per_candidate":
                    self.cpu_us_per_candidate("server_cpu_us_per_candidate"),
                "request_bytes": _first(self.ran, "request_bytes"),
                "curve": [{"rate_per_s": r.rate_per_s, "passed": r.passed,
                           "status": r.status, "run_id": r.run_id,
                           "latency_ms": r.figures.get("watched_ms"),
                           "p50_ms": r.figures.get("p50_ms"), "p99_ms": r.figures.get("p99_ms"),
                           "throughput_per_s": _throughput(r, fanout),
                           "error_rate": r.figures.get("error_rate")} for r in self.ran],
                "capacity": self.capacity}


def _throughput(result: PointResult, fanout: bool) -> float | None:
    return result.figures.get("queries_per_s" if fanout else "ok_rps")


def _first(results: Sequence[PointResult], key: str) -> Any:
    return next((r.figures[key] for r in results if r.figures.get(key) is not None), None)


def _brief(result: PointResult | None, watch: str) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"rate_per_s": result.rate_per_s, "run_id": result.run_id, "status": result.status,
            "watched_ms": result.figures.get("watched_ms"), "failed": _failed(result)}


def _failed(result: PointResult) -> list[str]:
    """What failed at a run: the SLO expressions, or why the run failed."""
    failed = [v["expression"] for v in result.verdicts if not v.get("passed")]
    if result.status == "failed":
        failed.append(f"the run failed ({result.reason})" if result.reason else "the run failed")
    elif not failed and result.passed is False:
        failed.append("errors")
    return failed


def summarize_configs(results: Sequence[PointResult],
                      capacities: Mapping[str, dict[str, Any]] | None = None
                      ) -> list[ConfigOutcome]:
    """Group runs by configuration, in the order configurations first ran."""
    configs: dict[str, ConfigOutcome] = {}
    for result in results:
        key = result.point.config_key
        if key not in configs:
            configs[key] = ConfigOutcome(key, result.label,
                                         capacity=(capacities or {}).get(key))
        configs[key].results.append(result)
    return list(configs.values())


def _watch_text(watch: str) -> str:
    return watch.replace("query_", "query ")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


def _violation(result: PointResult) -> float:
    """How far a run's worst verdict is past its limit (1.0 = at the limit)."""
    worst = 0.0
    for verdict in result.verdicts:
        actual, threshold = verdict.get("actual"), verdict.get("threshold")
        if actual is None or threshold is None:
            worst = math.inf
        elif verdict.get("op") in ("<", "<="):
            worst = max(worst, actual / threshold if threshold else math.inf)
        else:
            worst = max(worst, threshold / actual if actual else math.inf)
    return worst if result.status == "completed" else math.inf


def _why(config: ConfigOutcome, watch: str, fanout: bool) -> str:
    held, failure = config.held(), config.first_failure()
    parts = []
    if held is not None:
        parts.append(f"holds up to {rate_text(held.rate_per_s, fanout)} "
                     f"({_watch_text(watch)} {_ms(held.figures.get('watched_ms'))} there)")
    if failure is not None and failure.status == "failed":
        parts.append(f"the run at {rate_text(failure.rate_per_s, fanout)} failed"
                     + (f": {failure.reason}" if failure.reason else ""))
    elif failure is not None:
        what = ", ".join(_failed(failure)) or "the SLO"
        where = f"at {rate_text(failure.rate_per_s, fanout)}"
        if held is None:
            where = "at every rate tried" if len(config.ran) > 1 else where
        parts.append(f"fails {what} {where}")
    if not parts:
        parts.append("did not run")
    return "; ".join(parts)


def _contrast(best: ConfigOutcome, others: Sequence[ConfigOutcome], fanout: bool) -> str:
    """Why not the others, in a phrase: the weakest configuration of another kind."""
    if not others:
        return ""
    wire = best.results[0].point.wire if best.results else None
    pool = [c for c in others if c.results and c.results[0].point.wire != wire] or list(others)
    weakest = min(pool, key=lambda c: (c.sustainable_rps or 0.0))
    if (weakest.sustainable_rps or 0.0) >= (best.sustainable_rps or 0.0):
        # every other configuration holds the same rate: the difference is the CPU
        costly = max(pool, key=lambda c: c.cpu_us_per_candidate() or 0.0)
        mine, theirs = best.cpu_us_per_candidate(), costly.cpu_us_per_candidate()
        if mine and theirs:
            return (f"; {costly.label} holds it too, at {theirs / mine:.2g}× the CPU per "
                    "candidate")
        return f"; {costly.label} holds it too"
    failure = weakest.first_failure()
    what = ", ".join(_failed(failure)) if failure is not None else "the SLO"
    if failure is not None and failure.status == "failed":
        at = (f" above {rate_text(weakest.sustainable_rps, fanout)}"
              if weakest.sustainable_rps is not None
              else f" at {rate_text(failure.rate_per_s, fanout)}")
        return f"; {weakest.label} failed to run{at}" + (f" ({failure.reason})"
                                                          if failure.reason else "")
    if weakest.sustainable_rps is None:
        where = ("at every rate tried" if len(weakest.ran) > 1 or failure is None
                 else f"at {rate_text(failure.rate_per_s, fanout)}")
        return f"; {weakest.label} fails {what} {where}"
    if failure is None:
        return f"; {weakest.label} holds only up to {rate_text(weakest.sustainable_rps, fanout)}"
    return f"; {weakest.label} fails {what} above {rate_text(weakest.sustainable_rps, fanout)}"


def _row(rank: int | None, config: ConfigOutcome, watch: str, fanout: bool) -> dict[str, Any]:
    held = config.held()
    return {"rank": rank, "label": config.label, "key": config.key,
            "sustainable_rps": config.sustainable_rps,
            "watched_ms": held.figures.get("watched_ms") if held else None,
            "cpu_us_per_candidate": config.cpu_us_per_candidate(),
            "client_cpu_us_per_candidate":
                config.cpu_us_per_candidate("client_cpu_us_per_candidate"),
            "server_cpu_us_per_candidate":
                config.cpu_us_per_candidate("server_cpu_us_per_candidate"),
            "request_bytes": _first(config.ran, "request_bytes"),
            "why": _why(config, watch, fanout)}


def recommend(configs: Sequence[ConfigOutcome], *, slo: Sequence[str], watch: str = "p99",
              fanout: bool = False, required_rps: float | None = None) -> dict[str, Any]:
    """The recommendation record: ``met``, ``best``, ``headline``, ``ranked``, ``closest``."""
    met = [c for c in configs if c.sustainable_rps is not None]
    unmet = [c for c in configs if c.sustainable_rps is None]

    def cpu_key(c: ConfigOutcome) -> float:
        value = c.cpu_us_per_candidate()
        return value if value is not None else math.inf

    if required_rps is not None:
        eligible = [c for c in met if (c.sustainable_rps or 0) >= required_rps * (1 - 1e-9)]
        eligible.sort(key=lambda c: (cpu_key(c), -(c.sustainable_rps or 0)))
        rest = sorted((c for c in met if c not in eligible),
                      key=lambda c: -(c.sustainable_rps or 0))
        ranked = eligible + rest
    else:
        eligible = sorted(met, key=lambda c: (-(c.sustainable_rps or 0), cpu_key(c)))
        ranked = eligible
    slo_text = " and ".join(slo) if slo else "completed without errors"
    record: dict[str, Any] = {"slo": list(slo), "required_rps": required_rps,
                              "met": bool(eligible), "best": None, "closest": None,
                              "ranked": [_row(i + 1, c, watch, fanout)
                                         for i, c in enumerate(ranked)]
                              + [_row(None, c, watch, fanout) for c in unmet]}
    if not eligible:
        candidates = [r for c in configs for r in c.ran]
        closest = min(candidates, key=_violation) if candidates else None
        if required_rps is not None and met:
            top = ranked[0]
            record["headline"] = (
                f"no configuration sustains the required {rate_text(required_rps, fanout)} "
                f"within {slo_text}; the highest is {top.label} at "
                f"{rate_text(top.sustainable_rps, fanout)}")
        elif closest is not None:
            detail = "; ".join(v["message"] for v in closest.verdicts if not v["passed"]) \
                or (closest.reason or "the run failed")
            record["headline"] = (f"no configuration meets {slo_text}; closest: "
                                  f"{closest.label} at {rate_text(closest.rate_per_s, fanout)}"
                                  f" ({detail})")
            record["closest"] = {"label": closest.label, "rate_per_s": closest.rate_per_s,
                                 "run_id": closest.run_id, "detail": detail,
                                 "watched_ms": closest.figures.get("watched_ms")}
        else:
            record["headline"] = "no configuration ran"
        return record
    best = eligible[0]
    held = best.held()
    assert held is not None
    figure = (f"{_watch_text(watch)} {_ms(held.figures.get('watched_ms'))} at "
              f"{rate_text(held.rate_per_s, fanout)}")
    if required_rps is not None:
        cpu = best.cpu_us_per_candidate()
        cpu_text = f"{cpu:.3g} µs CPU per candidate" if cpu is not None else "CPU unknown"
        headline = (f"{best.label}: sustains {rate_text(required_rps, fanout)} with the least "
                    f"CPU ({cpu_text}; {figure})")
    else:
        headline = f"{best.label}: {figure}"
    headline += _contrast(best, [c for c in configs if c is not best], fanout)
    record["best"] = {"label": best.label, "key": best.key,
                      "sustainable_rps": best.sustainable_rps, "run_id": held.run_id,
                      "watched_ms": held.figures.get("watched_ms"),
                      "cpu_us_per_candidate": best.cpu_us_per_candidate()}
    record["headline"] = headline
    return record
