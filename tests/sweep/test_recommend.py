"""Recommendations from sweep results: sustainable rates, ranking, the one-line why."""

from __future__ import annotations

from typing import Any

import pytest

from modelcaliper.sweep.axes import Wire
from modelcaliper.sweep.plan import Point, ServerConfig
from modelcaliper.sweep.recommend import recommend, summarize_configs
from modelcaliper.sweep.results import PointResult

SLO = "p99<250ms"


def result(wire: str, batch: int, rate: float, p99: float | None, *, cpu: float = 10.0,
           status: str = "completed", reason: str | None = None) -> PointResult:
    """A run of ``wire`` (``v2-grpc gzip``) at ``rate`` whose p99 decides the SLO."""
    protocol, *rest = wire.split()
    compression = rest[-1] if rest and rest[-1] in ("gzip", "none") else "none"
    encoding = rest[0] if rest and rest[0] not in ("gzip", "none") else None
    point = Point(0, ServerConfig(), Wire(protocol, encoding, compression), batch, rate)
    label = f"batch {batch} + {point.wire.label}"
    passed = status == "completed" and p99 is not None and p99 < 250.0
    verdicts: list[dict[str, Any]] = []
    if status == "completed" and p99 is not None:
        verdicts = [{"expression": SLO, "passed": passed, "actual": p99, "op": "<",
                     "threshold": 250.0,
                     "message": f"p99 = {p99:g} ms, expected < 250 ms"}]
    return PointResult(point, rate, label, status, reason=reason, run_id=f"run-{wire}-{rate}",
                       passed=passed, verdicts=verdicts,
                       figures={"watched_ms": p99, "p99_ms": p99, "cpu_us_per_candidate": cpu,
                                "client_cpu_us_per_candidate": cpu * 0.25,
                                "server_cpu_us_per_candidate": cpu * 0.75,
                                "request_bytes": 100.0})


def test_highest_sustainable_rate_wins_and_the_headline_says_why() -> None:
    results = [
        result("v2-grpc gzip", 25, 10, 80), result("v2-grpc gzip", 25, 20, 120),
        result("v2-grpc gzip", 25, 40, 182), result("v2-grpc gzip", 25, 80, 900),
        result("v2-rest json", 25, 10, 150), result("v2-rest json", 25, 20, 400),
        result("v2-rest json", 25, 40, 2000), result("v2-rest json", 25, 80, 5000),
    ]
    configs = summarize_configs(results)
    assert [c.sustainable_rps for c in configs] == [40, 10]
    record = recommend(configs, slo=[SLO], fanout=True)
    assert record["met"] is True
    assert record["headline"] == ("batch 25 + v2-grpc gzip: p99 182 ms at 40 queries/s; "
                                  "batch 25 + v2-rest json fails p99<250ms above 10 queries/s")
    ranked = record["ranked"]
    assert [(r["rank"], r["label"]) for r in ranked] == [(1, "batch 25 + v2-grpc gzip"),
                                                         (2, "batch 25 + v2-rest json")]
    assert ranked[0]["why"] == ("holds up to 40 queries/s (p99 182 ms there); fails p99<250ms "
                                "at 80 queries/s")
    assert record["best"]["run_id"] == "run-v2-grpc gzip-40"


def test_a_pass_above_a_failure_does_not_count() -> None:
    # noise: 40/s failed, 80/s passed; the sustainable rate stays below the first failure
    configs = summarize_configs([result("v2-grpc", 1, 20, 100), result("v2-grpc", 1, 40, 300),
                                 result("v2-grpc", 1, 80, 200)])
    assert configs[0].sustainable_rps == 20


def test_a_failed_run_is_a_failure_at_its_rate() -> None:
    configs = summarize_configs([
        result("v2-grpc", 1, 10, 50),
        result("v2-grpc", 1, 20, None, status="failed",
               reason="the server process was killed by SIGKILL")])
    assert configs[0].sustainable_rps == 10
    assert recommend(configs, slo=[SLO])["ranked"][0]["why"] == (
        "holds up to 10 req/s (p99 50 ms there); the run at 20 req/s failed: the server "
        "process was killed by SIGKILL")


def test_the_required_rate_picks_the_least_cpu() -> None:
    results = [result("v2-grpc", 5, 40, 100, cpu=50.0), result("v2-grpc", 50, 40, 120, cpu=8.0),
               result("v2-rest json", 50, 40, 400, cpu=4.0)]
    record = recommend(summarize_configs(results), slo=[SLO], required_rps=40)
    assert record["best"]["label"] == "batch 50 + v2-grpc"
    assert record["headline"].startswith("batch 50 + v2-grpc: sustains 40 req/s with the least "
                                         "CPU (8 µs CPU per candidate; p99 120 ms at 40 req/s)")
    assert [r["rank"] for r in record["ranked"]] == [1, 2, None]
    # a required rate nobody sustains: said, with the best there is
    none = recommend(summarize_configs(results), slo=[SLO], required_rps=80)
    assert none["met"] is False
    assert none["headline"] == ("no configuration sustains the required 80 req/s within "
                                "p99<250ms; the highest is batch 5 + v2-grpc at 40 req/s")


def test_no_configuration_meets_the_slo_shows_the_closest() -> None:
    results = [result("v2-grpc", 1, 10, 400), result("v2-rest json", 1, 10, 310),
               result("v2-rest json", 1, 20, None, status="failed", reason="boom")]
    record = recommend(summarize_configs(results), slo=[SLO])
    assert record["met"] is False and record["best"] is None
    assert record["headline"] == ("no configuration meets p99<250ms; closest: batch 1 + "
                                  "v2-rest json at 10 req/s (p99 = 310 ms, expected < 250 ms)")
    assert record["closest"]["run_id"] == "run-v2-rest json-10"
    assert [r["rank"] for r in record["ranked"]] == [None, None]


@pytest.mark.parametrize(("results", "headline"), [
    # the other configuration never held: "at every rate tried"
    ([result("v2-grpc", 1, 10, 100), result("v2-grpc", 1, 20, 100),
      result("v2-rest json", 1, 10, 300), result("v2-rest json", 1, 20, 300)],
     "batch 1 + v2-grpc: p99 100 ms at 20 req/s; batch 1 + v2-rest json fails p99<250ms at "
     "every rate tried"),
    # it failed at the one rate tried: that rate
    ([result("v2-grpc", 1, 10, 100), result("v2-rest json", 1, 10, 300)],
     "batch 1 + v2-grpc: p99 100 ms at 10 req/s; batch 1 + v2-rest json fails p99<250ms at "
     "10 req/s"),
    # it held wherever it ran, only less far: "holds only up to"
    ([result("v2-grpc", 1, 20, 100), result("v2-rest json", 1, 10, 100)],
     "batch 1 + v2-grpc: p99 100 ms at 20 req/s; batch 1 + v2-rest json holds only up to "
     "10 req/s"),
    # the same rate held by both: the difference is the CPU
    ([result("v2-grpc", 1, 20, 100, cpu=10.0), result("v2-rest json", 1, 20, 100, cpu=35.0)],
     "batch 1 + v2-grpc: p99 100 ms at 20 req/s; batch 1 + v2-rest json holds it too, at "
     "3.5× the CPU per candidate"),
    # alone: no contrast
    ([result("v2-grpc", 1, 20, 100)], "batch 1 + v2-grpc: p99 100 ms at 20 req/s"),
])
def test_the_contrast(results: list[PointResult], headline: str) -> None:
    assert recommend(summarize_configs(results), slo=[SLO])["headline"] == headline


def test_configuration_records_for_the_views() -> None:
    configs = summarize_configs([result("v2-grpc", 1, 10, 100), result("v2-grpc", 1, 20, 300)],
                                {"v2-grpc|batch=1|default": {"capacity_rps": 10}})
    record = configs[0].describe("p99", False)
    assert record["sustainable"] == "10 req/s"
    assert record["at"]["rate_per_s"] == 10 and record["first_failure"]["failed"] == [SLO]
    assert [p["rate_per_s"] for p in record["curve"]] == [10, 20]
    assert record["capacity"] == {"capacity_rps": 10}
    assert record["client_cpu_us_per_candidate"] == 2.5
