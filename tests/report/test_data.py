"""The Run view's data: built from a run folder's pre-aggregated artifacts."""

from __future__ import annotations

import math

import pytest

from modelcaliper.report.data import (
    downsample_intervals,
    error_rows,
    phase_breakdown,
    run_view,
)
from modelcaliper.report.servermetrics import bucket_series
from modelcaliper.store import load_histograms, load_intervals
from tests.report.seeded import BASELINE, HOSTILE, HOSTILE_ERROR


def test_run_view_reflects_the_stored_histograms(seeded_runs):
    folder, stored = seeded_runs[BASELINE.run_id]
    view = run_view(folder, stored)
    latency = load_histograms(folder)["latency"]
    requests = view["latency"]["requests"]
    assert requests["count"] == latency.count == BASELINE.requests
    assert sum(requests["bins"]["count"]) == latency.count
    assert requests["curve"]["ms"][-1] == pytest.approx(latency.percentile(99.99) / 1e3)
    assert view["latency"]["queries"]["count"] == BASELINE.requests // 4
    assert view["deadline_ms"] == BASELINE.deadline_ms
    assert view["run"]["tags"] == ["nightly"] and view["run"]["verdict"] == "fail"
    assert len(view["intervals"]["start_s"]) == len(load_intervals(folder)["rows"])
    assert len(view["slowest"]) == 20
    assert view["slowest"][0]["latency_ms"] == pytest.approx(latency.max / 1e3, rel=1e-3)
    assert view["profile"]["ops"][0]["name"] == "model/dense_0/MatMul"
    assert view["server"]["charts"][0]["le"][-1] == 1000.0  # 1 s bucket, in ms
    assert view["spec"]["seed"] == BASELINE.seed


def test_run_view_keeps_hostile_text_as_data(seeded_runs):
    folder, stored = seeded_runs[HOSTILE.run_id]
    view = run_view(folder, stored)
    assert view["run"]["model"] == HOSTILE.model
    assert view["errors"][0]["examples"] == [HOSTILE_ERROR]
    assert view["server"] is None and view["profile"] is None


def test_run_view_of_a_real_driven_run(tmp_path):
    from modelcaliper.store import RunFolder
    from tests.store.runs import driven_run

    run = driven_run(tmp_path / "records")
    folder = RunFolder(tmp_path / "runs", model="ranker")
    folder.write_summary(run.summary)
    folder.write_stats(run.result.stats, run.result.started_at_s)
    folder.adopt_records([run.records], [run.queries])
    folder.finish("completed")
    view = run_view(folder.path)
    assert view["latency"]["requests"]["count"] == run.summary["latency_ms"]["count"]
    assert view["errors"][0]["kind"] == "http_503"
    assert 0 < len(view["slowest"]) <= 20
    assert view["phases"]["partition"][:2] == ["schedule_lag", "client_queue"]


def test_the_lag_series_equals_the_raw_records(tmp_path):
    import numpy as np

    from modelcaliper.stats.histogram import DEFAULT_LAYOUT, Histogram
    from modelcaliper.store import RunFolder, load_requests
    from tests.store.runs import driven_run

    run = driven_run(tmp_path / "records")
    folder = RunFolder(tmp_path / "runs", model="ranker")
    folder.write_summary(run.summary)
    folder.write_stats(run.result.stats, run.result.started_at_s)
    folder.adopt_records([run.records], [run.queries])
    series = run_view(folder.path)["intervals"]
    table = load_requests(folder.path)
    measured = ~table["warmup"].to_numpy(zero_copy_only=False)
    intended = table["intended_ns"].to_numpy()[measured]
    lag_us = (table["dispatched_ns"].to_numpy()[measured] - intended) / 1e3
    second = intended // 1_000_000_000
    expected_p99, expected_max = [], []
    for start in series["start_s"]:
        due = lag_us[second == int(start)]
        if not len(due):
            expected_p99.append(None)
            expected_max.append(None)
            continue
        hist = Histogram(DEFAULT_LAYOUT)  # the engine's interval layout
        hist.record_many(due)
        expected_max.append(due.max() / 1e3)
        expected_p99.append(min(hist.percentile(99), due.max()) / 1e3)
    assert series["merged"] == 1 and any(v is not None for v in expected_max)
    assert series["lag_max_ms"] == pytest.approx(expected_max)  # exact, up to µs → ms
    assert series["lag_p99_ms"] == pytest.approx(expected_p99)
    assert np.count_nonzero(second >= 0) == len(lag_us)


def test_runs_stored_without_the_lag_series_draw_no_lag_chart(seeded_runs):
    from modelcaliper.report.html import render_report

    old = {"interval_s": 1.0, "rows": [  # intervals.json as runs stored it before lag
        {"start_s": 0.0, "count": 5, "ok": 5, "errors": 0, "timeouts": 0, "p50_ms": 1.0,
         "p99_ms": 2.0}]}
    series = downsample_intervals(old)
    assert "lag_max_ms" not in series and "lag_p99_ms" not in series
    view = run_view(*seeded_runs[BASELINE.run_id])
    assert 'data-chart="lag-time"' in render_report([view])  # a run with the lag series
    view["intervals"] = series
    page = render_report([view])
    assert 'data-chart="latency-time"' in page and 'data-chart="lag-time"' not in page


def test_downsampled_lag_keeps_the_worst_second_of_each_window():
    rows = [{"start_s": float(i), "count": 1, "ok": 1, "errors": 0, "timeouts": 0,
             "p50_ms": 1.0, "p99_ms": 1.0, "lag_p99_ms": 0.01 * i,
             "lag_max_ms": 130.0 if i == 7 else 0.02} for i in range(30)]
    rows[3]["lag_p99_ms"] = rows[3]["lag_max_ms"] = None  # nothing was due that second
    out = downsample_intervals({"interval_s": 1.0, "rows": rows}, max_points=10)
    assert out["merged"] == 3
    assert out["lag_max_ms"][2] == 130.0  # seconds 6-8: the stall is never averaged away
    assert out["lag_p99_ms"][1] == pytest.approx(0.05)  # seconds 3-5, second 3 empty
    assert len(out["lag_max_ms"]) == len(out["start_s"]) == 10


@pytest.mark.parametrize("rows, max_points, expected_points, merged", [
    (10, 600, 10, 1),     # short run: every second
    (1200, 600, 600, 2),  # twice the limit: pairs of seconds
    (1201, 600, 401, 3),  # just over twice: triples
])
def test_intervals_are_downsampled(rows, max_points, expected_points, merged):
    series = {"interval_s": 1.0, "rows": [
        {"start_s": float(i), "count": 10, "ok": 9, "errors": 1, "timeouts": 0,
         "p50_ms": 1.0, "p99_ms": float(i)} for i in range(rows)]}
    out = downsample_intervals(series, max_points)
    assert len(out["start_s"]) == expected_points and out["merged"] == merged
    assert sum(out["count"]) == 10 * rows  # counts are summed, never dropped
    assert out["p99_ms"][0] == float(merged - 1)  # the worst second of the window
    assert out["rate_per_s"][0] == pytest.approx(10.0)


def test_no_intervals_give_no_series():
    assert downsample_intervals(None) is None
    assert downsample_intervals({"interval_s": 1.0, "rows": []}) is None


@pytest.mark.parametrize("phases, partition", [
    # client phases only: the five that tile the latency
    ({"schedule_lag": {"count": 1, "mean": 1}, "client_queue": {"count": 1, "mean": 1},
      "send": {"count": 1, "mean": 1}, "wait": {"count": 1, "mean": 6},
      "receive": {"count": 1, "mean": 1}, "network": {"count": 1, "mean": 2}},
     ["schedule_lag", "client_queue", "send", "wait", "receive"]),
    # server phases reported: the wait is split into the network and the server's phases
    ({"schedule_lag": {"count": 1, "mean": 1}, "client_queue": {"count": 1, "mean": 1},
      "network": {"count": 1, "mean": 2}, "total": {"count": 1, "mean": 6},
      "decode": {"count": 1, "mean": 1}, "compute": {"count": 1, "mean": 5}},
     ["schedule_lag", "client_queue", "network", "decode", "compute"]),
    # transform/model reported separately replace compute
    ({"schedule_lag": {"count": 1, "mean": 1}, "client_queue": {"count": 1, "mean": 1},
      "network": {"count": 1, "mean": 2}, "total": {"count": 1, "mean": 6},
      "compute": {"count": 1, "mean": 5}, "transform": {"count": 1, "mean": 2},
      "model": {"count": 1, "mean": 3}},
     ["schedule_lag", "client_queue", "network", "transform", "model"]),
])
def test_phase_partition_and_shares(phases, partition):
    out = phase_breakdown({"phases_ms": phases})
    assert out["partition"] == partition
    assert math.fsum(out["shares"]["mean"]) == pytest.approx(1.0)


def test_errors_are_sorted_by_count_with_their_examples():
    rows = error_rows({"errors_by_kind": {"timeout": 2, "http_503": 5},
                       "error_examples": {"http_503": ["a", "b"]}})
    assert [r["kind"] for r in rows] == ["http_503", "timeout"]
    assert rows[0]["examples"] == ["a", "b"] and rows[1]["examples"] == []
    assert rows[0]["share"] == pytest.approx(5 / 7)


def test_bucket_series_rebuilds_prometheus_histograms():
    diff = {'lat_seconds_bucket{le="0.01",model="m"}': 3.0,
            'lat_seconds_bucket{le="0.1",model="m"}': 8.0,
            'lat_seconds_bucket{le="+Inf",model="m"}': 10.0,
            'lat_seconds_count{model="m"}': 10.0,
            "other_total": 4.0}
    (series,) = bucket_series(diff)
    assert series["metric"] == "lat_seconds" and series["labels"] == 'model="m"'
    assert series["le"] == [10.0, 100.0] and series["cumulative"] == [3, 8]
    assert series["count"] == 10 and series["unit"] == "ms"
