"""The waterfall's slowest requests: a two-pass top-k over requests.parquet's row groups."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelcaliper.report.slowest import slowest_requests


def _write(path, latencies_ns, *, warmup=None, row_group_rows=7, server_total_ms=None):
    n = len(latencies_ns)
    intended = np.arange(n, dtype=np.int64) * 1_000_000
    done = [None if lat is None else int(i + lat) for i, lat in zip(intended, latencies_ns,
                                                                     strict=True)]
    columns = {"index": np.arange(n, dtype=np.int64), "intended_ns": intended,
               "dispatched_ns": intended + 10, "sent_ns": intended + 20,
               "written_ns": intended + 30,
               "first_byte_ns": [None if d is None else d - 40 for d in done],
               "done_ns": pa.array(done, pa.int64()),
               "warmup": warmup if warmup is not None else np.zeros(n, bool),
               "status": ["ok"] * n}
    if server_total_ms is not None:
        columns["server_total_ms"] = pa.array(server_total_ms, pa.float32())
    pq.write_table(pa.table(columns), path, row_group_size=row_group_rows)


def test_top_k_matches_a_full_sort_across_row_groups(tmp_path):
    rng = np.random.default_rng(5)
    latencies = rng.integers(1_000, 10_000_000, 200).tolist()
    _write(tmp_path / "r.parquet", latencies)
    got = slowest_requests(tmp_path / "r.parquet", 20)
    expected = sorted(range(200), key=lambda i: (-latencies[i], i))[:20]
    assert [r["index"] for r in got] == expected
    assert [r["latency_ms"] for r in got] == [latencies[i] / 1e6 for i in expected]


@pytest.mark.parametrize("k, expected", [
    (1, [3]),             # the single slowest
    (10, [3, 1, 0, 2]),   # k above the measured rows: all of them, slowest first
])
def test_warmup_and_unfinished_requests_are_left_out(tmp_path, k, expected):
    # request 4 is the slowest but warm-up; request 5 never finished
    _write(tmp_path / "r.parquet", [300, 400, 200, 900, 5000, None],
           warmup=np.array([False, False, False, False, True, False]))
    assert [r["index"] for r in slowest_requests(tmp_path / "r.parquet", k)] == expected


def test_phases_tile_the_latency_and_the_server_splits_the_wait(tmp_path):
    _write(tmp_path / "r.parquet", [2_000_000], server_total_ms=[1.5])
    (request,) = slowest_requests(tmp_path / "r.parquet", 5)
    assert sum(p["ms"] for p in request["phases"]) == pytest.approx(2.0)
    names = [p["phase"] for p in request["phases"]]
    assert names == ["schedule_lag", "client_queue", "send", "network", "server_other",
                     "receive"]
    starts = [p["start_ms"] for p in request["phases"]]
    assert starts == sorted(starts)


def test_no_records_means_no_waterfall(tmp_path):
    assert slowest_requests(tmp_path / "absent.parquet") == []
