"""The Sweep view built from seeded sweep documents: every chart value traced to its point."""

from __future__ import annotations

import statistics
from pathlib import Path

import orjson
import pytest

from modelcaliper.errors import UsageError
from modelcaliper.report.sweep import read_sweep, sweep_summary, sweep_view
from tests.report.sweep_seeded import (
    AUTO_ID,
    FIXED_ID,
    auto_document,
    fixed_document,
    unmet_document,
)


def _point(document, run_id):
    return next(p for p in document["points"] if p["run_id"] == run_id)


def test_batch_chart_has_p50_and_p99_per_wire_and_rate_from_the_points():
    document = fixed_document()
    chart = sweep_view(document)["batch"]
    assert chart["batch_sizes"] == [10, 50] and chart["drawable"]
    # 3 wires × 2 rates, each a p50 and a p99 series
    assert len(chart["series"]) == 12
    for series in chart["series"]:
        wire, rate = series["label"].rsplit(" @ ", 1)
        rate_value = float(rate.split()[0])
        for batch, value in zip(chart["batch_sizes"], series["values"], strict=True):
            (point,) = [p for p in document["points"]
                        if p["config"]["batch_size"] == batch and p["config"]["rps"] == rate_value
                        and p["label"].endswith(wire)]
            expected = point["figures"].get(f"{series['percentile']}_ms")
            assert value == expected
        assert series["points"] == sum(v is not None for v in series["values"])
    # the failed run (v2-grpc, batch 50, 40 req/s) leaves a gap in its series
    grpc_40 = [s for s in chart["series"] if s["label"].startswith("v2-grpc @ 40")]
    assert [s["values"][1] for s in grpc_40] == [None, None]
    assert [s["points"] for s in grpc_40] == [1, 1]


def test_with_a_capacity_search_the_batch_chart_uses_the_rate_each_configuration_held():
    document = auto_document()
    view = sweep_view(document)
    chart = view["batch"]
    assert chart["batch_sizes"] == [25] and not chart["drawable"]  # one batch size: no chart
    for config in document["configs"]:
        held = _point(document, config["at"]["run_id"])
        (p99,) = [s for s in chart["series"]
                  if s["label"] == f"{config['label']} p99"]
        assert p99["values"] == [held["figures"]["p99_ms"]]


def test_curves_are_throughput_and_watched_latency_in_rate_order():
    document = auto_document()
    curves = sweep_view(document)["curves"]
    assert curves["drawable"] and len(curves["series"]) == 2
    for series in curves["series"]:
        config = next(c for c in document["configs"] if c["key"] == series["key"])
        ordered = sorted(config["curve"], key=lambda s: s["rate_per_s"])
        assert series["throughput"] == [s["throughput_per_s"] for s in ordered]
        assert series["latency_ms"] == [s["latency_ms"] for s in ordered]
        assert series["points"] == len(config["curve"]) == len(config["capacity"]["steps"])
        assert series["not_drawn"] == 0


def test_a_failed_run_is_left_off_its_curve_and_counted():
    document = fixed_document()
    series = {s["label"]: s for s in sweep_view(document)["curves"]["series"]}
    assert series["batch 50 + v2-grpc"]["points"] == 1
    assert series["batch 50 + v2-grpc"]["not_drawn"] == 1
    assert sum(s["points"] for s in series.values()) == 11  # 12 runs, one failed


def test_bars_show_bytes_per_candidate_when_the_batch_varies_and_cpu_per_candidate():
    document = fixed_document()
    bars = sweep_view(document)["bars"]
    assert bars["bytes_per"] == "candidate"
    assert len(bars["rows"]) == len(document["configs"]) == 6
    for row, value, cpu in zip(bars["rows"], bars["bytes"], bars["cpu_total"], strict=True):
        config = next(c for c in document["configs"] if c["key"] == row["key"])
        batch = config["config"]["batch_size"]
        assert value == pytest.approx(config["request_bytes"] / batch)
        runs = [p for p in document["points"] if p["config_key"] == row["key"]
                and p["figures"].get("client_cpu_us_per_candidate") is not None]
        assert cpu == pytest.approx(statistics.median(
            p["figures"]["client_cpu_us_per_candidate"] for p in runs))
        encode = runs[0]["figures"]["encode_us_per_request"] / batch
        assert row["encode_us_per_candidate"] == pytest.approx(encode)
        assert encode < cpu  # encoding is a part of the client's CPU
    # one batch size: bytes per request
    assert sweep_view(auto_document())["bars"]["bytes_per"] == "request"


def test_recommendation_on_top_with_the_best_row_and_a_why_for_every_row():
    view = sweep_view(fixed_document())
    rec = view["recommendation"]
    assert rec["met"] and rec["headline"].startswith(rec["best"]["label"] + ":")
    best = [r for r in rec["ranked"] if r["best"]]
    assert len(best) == 1 and best[0]["rank"] == 1
    assert all(r["why"] for r in rec["ranked"])
    unranked = [r for r in rec["ranked"] if r["rank"] is None]
    assert [r["sustainable"] for r in unranked] == ["none"]


def test_when_nothing_meets_the_slo_the_closest_point_is_named():
    rec = sweep_view(unmet_document())["recommendation"]
    assert not rec["met"] and rec["best"] is None
    assert rec["headline"].startswith("no configuration meets p99<1ms; closest: ")
    assert rec["closest"]["label"] in rec["headline"]
    assert all(r["rank"] is None for r in rec["ranked"])


def test_points_link_only_to_runs_the_store_holds():
    document = fixed_document()
    ids = [p["run_id"] for p in document["points"]]
    linked = sweep_view(document, stored_runs={ids[0], ids[3], "someone-else"})["points"]
    assert [r["linked"] for r in linked] == [i in (0, 3) for i in range(len(ids))]
    assert not any(r["linked"] for r in sweep_view(document)["points"])  # offline: none


def test_points_mark_failures_and_the_slo_they_failed():
    rows = sweep_view(fixed_document())["points"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["failed"] == "run failed: the server process was killed by SIGKILL"
    assert failed[0]["p99_ms"] is None
    missed = [r for r in rows if r["status"] == "completed" and not r["passed"]]
    assert missed and all(r["failed"] == "fails p99<50ms" for r in missed)
    assert [r["position"] for r in rows] == list(range(1, len(rows) + 1))


def test_slo_lines_timing_and_capacity():
    view = sweep_view(auto_document())
    assert view["slo_lines"] == [{"metric": "p99", "threshold_ms": 50.0,
                                  "expression": "p99<50ms"}]
    assert view["watch_slo_ms"] == 50.0
    timing = view["timing"]
    assert timing["runs"] == len(view["points"])
    assert timing["early_stop_saved_s"] == pytest.approx(
        timing["max_load_s"] - timing["measured_load_s"])
    assert {row["label"] for row in view["capacity"]} == {"v2-rest json", "v2-grpc"}
    for row in view["capacity"]:
        assert row["low"] < row["high"] and row["steps"] >= 3


def test_summary_row():
    row = sweep_summary(fixed_document())
    assert row["sweep_id"] == FIXED_ID and row["runs"] == 12 and row["configs"] == 6
    assert row["met"] and row["model"] == "ranker" and row["slo"] == ["p99<50ms"]


def test_a_document_that_is_not_a_sweep_is_refused():
    with pytest.raises(UsageError, match="not a sweep document"):
        sweep_view({"schema": "modelcaliper.run/1"})


def test_read_sweep_by_id_folder_or_file(tmp_path: Path):
    folder = tmp_path / "sweeps" / AUTO_ID
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_bytes(orjson.dumps(auto_document()))
    for name in (AUTO_ID, str(folder), str(folder / "sweep.json")):
        assert read_sweep(name, tmp_path / "sweeps")["sweep_id"] == AUTO_ID


@pytest.mark.parametrize("name, content, message", [
    # an id with no folder
    ("20260101-000000-sweep-x-000000", None, "was not found"),
    # not an id, not a path
    ("../no/such/sweep", None, "is not a sweep.json, a sweep folder nor a sweep id"),
    # a file that is not JSON
    ("bad.json", b"{", "cannot be read as JSON"),
    # JSON that is not a sweep
    ("run.json", b'{"schema": "modelcaliper.run/1"}', "is not a sweep document"),
])
def test_read_sweep_errors_are_one_line(tmp_path: Path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
        name = str(tmp_path / name)
    with pytest.raises(UsageError, match=message) as caught:
        read_sweep(name, tmp_path / "sweeps")
    assert "\n" not in str(caught.value)
