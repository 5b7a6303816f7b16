"""The Compare view: deltas with 95 % intervals and one plain verdict per candidate."""

from __future__ import annotations

import pytest

from modelcaliper.report.compare import compare_view, format_delta, format_delta_ms, verdict_line
from tests.report.seeded import BASELINE, FASTER, HOSTILE


@pytest.mark.parametrize("delta_ms, text", [
    (-48.0, "−48.0 ms"),     # a real minus sign
    (-148.2, "−148 ms"),     # three figures at most
    (1.234, "+1.23 ms"),
    (0.0123, "+0.012 ms"),
    (0.0, "±0.000 ms"),      # no sign for no change
])
def test_format_delta_ms(delta_ms, text):
    assert format_delta_ms(delta_ms) == text


@pytest.mark.parametrize("delta, unit, text", [
    (0.012, "ratio", "+1.20 pp"),   # rates move in percentage points
    (-3.0, "per_s", "−3.0/s"),
    (None, "ratio", "–"),           # one side missing
])
def test_format_scalar_delta(delta, unit, text):
    assert format_delta(delta, unit) == text


@pytest.mark.parametrize("row, line", [
    ({"series": "requests", "percentile": 99.0, "delta_ms": -48.0, "outside_noise": True},
     "p99 −48.0 ms, outside noise"),
    ({"series": "queries", "percentile": 99.0, "delta_ms": 2.5, "outside_noise": False},
     "query p99 +2.50 ms, within noise"),
])
def test_verdict_line(row, line):
    assert verdict_line(row) == line


def test_a_faster_version_is_outside_the_noise(seeded_runs):
    view = compare_view([seeded_runs[BASELINE.run_id], seeded_runs[FASTER.run_id]])
    (comparison,) = view["comparisons"]
    p99 = next(r for r in comparison["rows"] if r["percentile"] == 99 and
               r["series"] == "requests")
    assert p99["outside_noise"] and p99["change"] == "lower"
    assert p99["candidate_high_ms"] < p99["baseline_low_ms"]
    assert comparison["verdict"].startswith("p99 −") and comparison["verdict"].endswith(
        "outside noise")
    assert [len(c["ms"]) for c in view["series"]["requests"]["curves"]] == [41, 41]
    assert [sum(f) for f in view["series"]["requests"]["bins"]["fraction"]] == \
        pytest.approx([1.0, 1.0])


def test_a_run_against_itself_is_within_noise(seeded_runs):
    view = compare_view([seeded_runs[BASELINE.run_id]] * 2)
    rows = view["comparisons"][0]["rows"]
    assert rows and all(not r["outside_noise"] and r["delta_ms"] == 0 for r in rows)


def test_three_runs_compare_each_against_the_first(seeded_runs):
    view = compare_view([seeded_runs[s.run_id] for s in (BASELINE, FASTER, HOSTILE)])
    assert [c["candidate"] for c in view["comparisons"]] == [FASTER.run_id, HOSTILE.run_id]
    assert {c["baseline"] for c in view["comparisons"]} == {BASELINE.run_id}
    errors = next(s for s in view["comparisons"][1]["scalars"] if s["name"] == "error rate")
    assert errors["delta"] > 0.1
