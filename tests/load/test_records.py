"""Raw records: Parquet round trip, chunking, folded statistics, merges and bounded memory."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from modelcaliper.load.records import MAX_EXAMPLES, Recorder, RunStats, read_records
from modelcaliper.load.transport import Outcome, Status

ROOT = Path(__file__).resolve().parents[2]
BASE = 1_000_000_000  # the run's start, in absolute ns


def outcome(i: int) -> tuple[int, int, Outcome, bool]:
    """A varied but deterministic record: (intended, dispatched, outcome, warm-up)."""
    intended = BASE + i * 1_000_000
    dispatched = intended + 10_000
    sent = dispatched + 20_000
    status = [Status.OK, Status.OK, Status.OK, Status.ERROR, Status.TIMEOUT, Status.DROPPED][i % 6]
    if status == Status.DROPPED:
        return intended, dispatched, Outcome(status, done_ns=dispatched, error_kind="dropped",
                                             error_message="queue full"), i < 6
    done = sent + 2_000_000 + (i % 7) * 100_000
    timing = {"compute": 1.5, "total": 1.75} if status == Status.OK else {}
    kind = {Status.ERROR: "http_503", Status.TIMEOUT: "timeout"}.get(status, "")
    return intended, dispatched, Outcome(
        status, sent, sent + 5_000, 0 if status == Status.TIMEOUT else done - 1_000, done,
        response_bytes=30, request_bytes=100, code="200" if status == Status.OK else "503",
        error_kind=kind, error_message=f"failed #{i}" if kind else "",
        server_timing_ms=timing), i < 6


def fill(recorder: Recorder, indices: range) -> None:
    for i in indices:
        intended, dispatched, out, warm = outcome(i)
        recorder.add(i, i // 3, intended, dispatched, out, rows=4, warmup=warm, base_ns=BASE)


def test_parquet_round_trip(tmp_path: Path) -> None:
    recorder = Recorder(worker=3, path=tmp_path / "r.parquet", chunk_rows=5)
    fill(recorder, range(24))
    stats = recorder.close()
    table = pq.read_table(tmp_path / "r.parquet")
    assert pq.ParquetFile(tmp_path / "r.parquet").num_row_groups == 5  # 24 rows in chunks of 5
    assert table.num_rows == 24
    rows = table.to_pydict()
    assert rows["index"] == list(range(24))
    assert rows["query"] == [i // 3 for i in range(24)]
    assert set(rows["worker"]) == {3}
    assert rows["warmup"] == [i < 6 for i in range(24)]
    for i in range(24):
        intended, dispatched, out, _ = outcome(i)
        assert rows["intended_ns"][i] == intended - BASE
        assert rows["dispatched_ns"][i] == dispatched - BASE
        assert rows["status"][i] == out.status.name.lower()
        # a timestamp never reached is null, not 0
        assert rows["sent_ns"][i] == (out.sent_ns - BASE if out.sent_ns else None)
        assert rows["first_byte_ns"][i] == (out.first_byte_ns - BASE if out.first_byte_ns else None)
        assert rows["error_kind"][i] == out.error_kind
        compute = rows["server_compute_ms"][i]
        assert compute == 1.5 if out.status == Status.OK else math.isnan(compute)
        assert math.isnan(rows["server_queue_ms"][i])
    # the statistics cover the 18 measured records only
    assert stats.scheduled == 18 and stats.warmup_requests == 6
    assert stats.count(Status.DROPPED) == 3
    assert stats.sent == 15
    assert read_records([tmp_path / "r.parquet"]).num_rows == 24


def test_an_empty_run_still_writes_its_columns(tmp_path: Path) -> None:
    recorder = Recorder(path=tmp_path / "r.parquet", query_path=tmp_path / "q.parquet")
    stats = recorder.close()
    assert stats.scheduled == 0
    assert "server_total_ms" in pq.read_table(tmp_path / "r.parquet").column_names
    assert pq.read_table(tmp_path / "q.parquet").num_rows == 0


def test_folded_statistics_are_exact() -> None:
    recorder = Recorder()
    intended = BASE
    # latency exactly 3 ms: schedule lag 0.1, client queue 0.2, send 0.3, wait 1.4, receive 1.0
    out = Outcome(Status.OK, intended + 300_000, intended + 600_000, intended + 2_000_000,
                  intended + 3_000_000, 50, 100, "200", server_timing_ms={"total": 1.5})
    for i in range(10):
        recorder.add(i, -1, intended, intended + 100_000, out, 2, False, BASE)
    stats = recorder.close()
    h = stats.histograms
    assert h["latency"].percentile(50) == pytest.approx(3000, rel=1e-3)
    expected_us = {"schedule_lag": 100, "client_queue": 200, "send": 300, "wait": 1400,
                   "receive": 1000, "network": 2700 - 1500, "total": 1500}
    for phase, micros in expected_us.items():
        assert h[phase].count == 10, phase
        assert h[phase].percentile(50) == pytest.approx(micros, rel=1e-3), phase
    assert stats.rows_ok == 20 and stats.request_bytes_sum == 1000
    assert stats.response_bytes_sum == 500
    assert stats.last_done_ns == 3_000_000
    rows = stats.intervals.rows()
    assert rows[0]["ok"] == 10 and rows[0]["p50_us"] == pytest.approx(3000, rel=1e-2)


def test_error_examples_are_capped_per_kind() -> None:
    stats = RunStats()
    for i in range(10):
        stats.note_error("reset", f"connection reset #{i % 5}")
    stats.note_error("reset", "connection reset #0")
    assert stats.errors_by_kind == {"reset": 11}
    assert stats.error_examples["reset"] == [f"connection reset #{i}" for i in range(MAX_EXAMPLES)]


def test_chunk_size_does_not_change_the_statistics() -> None:
    small, large = Recorder(chunk_rows=7), Recorder(chunk_rows=10_000)
    fill(small, range(100))
    fill(large, range(100))
    a, b = small.close(), large.close()
    assert np.array_equal(a.status_counts, b.status_counts)
    for name in a.histograms:
        assert a.histograms[name] == b.histograms[name], name
    assert a.intervals.rows() == b.intervals.rows()
    assert a.errors_by_kind == b.errors_by_kind


def test_merging_split_records_equals_recording_them_together() -> None:
    whole, left, right = Recorder(), Recorder(worker=0), Recorder(worker=1)
    fill(whole, range(300))
    fill(left, range(0, 300, 2))
    fill(right, range(1, 300, 2))
    merged = left.close()
    merged.merge(right.close())
    alone = whole.close()
    assert np.array_equal(merged.status_counts, alone.status_counts)
    for name in alone.histograms:
        assert merged.histograms[name] == alone.histograms[name], name
    assert merged.intervals.rows() == alone.intervals.rows()
    assert merged.errors_by_kind == alone.errors_by_kind
    for name in ("sent", "request_bytes_sum", "response_bytes_sum", "rows_ok",
                 "last_done_ns", "last_sent_ns", "warmup_requests"):
        assert getattr(merged, name) == getattr(alone, name), name


MEMORY_SCRIPT = textwrap.dedent("""
    import sys
    from modelcaliper.load.records import Recorder
    from modelcaliper.load.transport import Outcome, Status

    def status_mb(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024

    def rss_mb():
        return status_mb("VmRSS")

    recorder = Recorder(path=sys.argv[1], query_path=None)
    before = rss_mb()
    base = 10**9
    timing = {"queue": 0.1, "compute": 1.2, "total": 1.5}
    for i in range(1_000_000):
        t = base + i * 1000
        out = Outcome(Status.OK, t + 50, t + 60, t + 900_000 + i % 977, t + 1_000_000 + i % 991,
                      40, 120, "200", server_timing_ms=timing)
        recorder.add(i, -1, t, t + 10, out, 4, False, base)
    stats = recorder.close()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of a big pytest
    # process would report the parent's peak; VmHWM belongs to this program's memory alone.
    peak = status_mb("VmHWM")
    print(before, rss_mb(), peak, stats.scheduled, recorder.writer_usage["peak_rss_mb"])
""")


@pytest.mark.slow
def test_a_million_records_stay_within_200_mb(tmp_path: Path) -> None:
    script = tmp_path / "mem.py"
    script.write_text(MEMORY_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "r.parquet")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr
    before_mb, after_mb, peak_mb, count, writer_mb = done.stdout.split()
    assert int(count) == 1_000_000
    # the recorder's growth and the whole of its writer process, which folds and writes
    assert float(peak_mb) - float(before_mb) + float(writer_mb) <= 200
    assert float(after_mb) - float(before_mb) <= 200
    assert pq.ParquetFile(tmp_path / "r.parquet").metadata.num_rows == 1_000_000
