"""Chunks folded and written by the writer process: exact, in order, bounded, never waited
for, failures surfaced."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from modelcaliper.load.live import LiveTap
from modelcaliper.load.records import Recorder, RunStats, read_records
from modelcaliper.load.transport import Outcome, Status

BASE = 5_000_000_000  # the run's start, in absolute ns
STATUSES = [Status.OK, Status.ERROR, Status.TIMEOUT, Status.DROPPED, Status.CANCELLED,
            Status.MODEL_ERROR]


def seeded_stream(recorder: Recorder, count: int, seed: int = 7) -> None:
    """``count`` random but seeded requests (and a query per 4 requests) into ``recorder``."""
    rng = np.random.default_rng(seed)
    status = rng.choice(len(STATUSES), count, p=[0.8, 0.06, 0.04, 0.04, 0.03, 0.03])
    intended = BASE + np.cumsum(rng.integers(10_000, 200_000, count))
    lag = rng.exponential(30_000, count).astype(np.int64)
    stall = rng.random(count) < 0.01  # a few sends very late, as in a generator stall
    lag[stall] += 120_000_000
    for i in range(count):
        st = STATUSES[status[i]]
        dispatched = int(intended[i] + lag[i])
        sent = dispatched + int(rng.integers(0, 50_000))
        done = sent + int(rng.lognormal(14, 0.6))
        if st in (Status.DROPPED, Status.CANCELLED):
            out = Outcome(st, done_ns=done, error_kind=st.name.lower(),
                          error_message=f"{st.name.lower()} #{i % 5}")
        else:
            timing = {"queue": float(rng.random()), "total": float(rng.random() * 3)} \
                if st == Status.OK and i % 3 else {}
            kind = "" if st == Status.OK else f"kind_{st.value}"
            out = Outcome(st, sent, sent + 4_000, done - 2_000, done, request_bytes=120,
                          response_bytes=40 if st == Status.OK else 0,
                          code="200" if st == Status.OK else "503", error_kind=kind,
                          error_message=f"failed #{i % 7}" if kind else "",
                          server_timing_ms=timing)
        recorder.add(i, i // 4, int(intended[i]), dispatched, out, rows=1 + i % 3,
                     warmup=i < 50, base_ns=BASE)
        if i % 4 == 3:
            recorder.add_query(i // 4, int(intended[i - 3]), done, 4, int(i % 5 != 0),
                               bool(i % 11 == 0), i < 50, BASE)


def assert_same_stats(a: RunStats, b: RunStats) -> None:
    assert np.array_equal(a.status_counts, b.status_counts)
    assert a.histograms.keys() == b.histograms.keys()
    for name in a.histograms:
        assert a.histograms[name] == b.histograms[name], name
    assert a.intervals.rows() == b.intervals.rows()
    for name in ("sent", "request_bytes_sum", "response_bytes_sum", "rows_ok", "queries",
                 "queries_ok", "deadline_misses", "warmup_requests", "last_dispatched_ns",
                 "last_sent_ns", "last_done_ns", "errors_by_kind", "error_examples"):
        assert getattr(a, name) == getattr(b, name), name


def test_background_writer_gives_the_same_stats_and_rows_as_the_inline_path(
        tmp_path: Path) -> None:
    recorders = {}
    for mode, background in (("inline", False), ("background", True)):
        recorder = Recorder(path=tmp_path / mode / "r.parquet",
                            query_path=tmp_path / mode / "q.parquet", chunk_rows=97,
                            background=background)
        seeded_stream(recorder, 3000)
        recorders[mode] = recorder
    inline, background = recorders["inline"].close(), recorders["background"].close()
    assert inline.scheduled == 3000 - 50  # every measured record was folded
    assert_same_stats(inline, background)
    for name in ("r.parquet", "q.parquet"):
        a, b = (pq.read_table(tmp_path / mode / name) for mode in ("inline", "background"))
        assert a.schema == b.schema and a.num_rows == b.num_rows
        for column in a.column_names:  # same rows in the same order (NaN != NaN in equals)
            assert a[column].to_pylist() == b[column].to_pylist() or np.array_equal(
                a[column].to_numpy(), b[column].to_numpy(), equal_nan=True), column
        assert pq.ParquetFile(tmp_path / "background" / name).num_row_groups == \
            pq.ParquetFile(tmp_path / "inline" / name).num_row_groups
    assert pq.read_table(tmp_path / "background" / "r.parquet")["index"].to_pylist() == \
        list(range(3000))


def test_the_live_tap_sees_every_row_once_while_chunks_go_to_the_writer() -> None:
    recorder = Recorder(chunk_rows=16)
    tap = LiveTap(recorder)
    taken: list[np.ndarray] = []
    index = 0
    for burst in (5, 40, 16, 0, 77, 3):  # takes within, across and at chunk boundaries
        for _ in range(burst):
            out = Outcome(Status.OK, sent_ns=BASE + index + 10, done_ns=BASE + index + 20)
            recorder.add(index, -1, BASE + index, BASE + index + 5, out, 1, False, BASE)
            index += 1
        taken.append(tap.take(index).requests["intended_ns"])
    stats = recorder.close()
    taken.append(tap.take().requests["intended_ns"])
    assert np.concatenate(taken).tolist() == list(range(index))
    assert stats.scheduled == index


def test_an_unwritable_records_path_fails_before_any_record(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the records folder should be")
    with pytest.raises(FileExistsError):  # the folder is made up front, before a run starts
        Recorder(path=blocker / "r.parquet", chunk_rows=8)


@pytest.mark.parametrize("background", [True, False])
def test_a_writer_failure_is_raised_at_close_and_never_blocks_the_run(
        tmp_path: Path, background: bool) -> None:
    recorder = Recorder(path=tmp_path / "r.parquet", chunk_rows=8, background=background)
    (tmp_path / "r.parquet").mkdir()  # the records file cannot be opened: a real failure
    seeded_stream(recorder, 200)  # 25 chunks; adding never raises: the failure is the writer's
    with pytest.raises(IsADirectoryError):
        recorder.close()
    with pytest.raises(IsADirectoryError):  # and it stays visible
        recorder.close()


def _writer_pid(recorder: Recorder) -> int:
    assert recorder._writer is not None
    return recorder._writer.process.pid


def _mapped_spill_files() -> list[str]:
    return [line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
            if ".bin" in line and "caliper-spill-" in line]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_a_stopped_writer_never_holds_the_run_back_nor_grows_its_memory(
        tmp_path: Path) -> None:
    recorder = Recorder(path=tmp_path / "r.parquet", query_path=tmp_path / "q.parquet",
                        chunk_rows=32)
    seeded_stream(recorder, 40)  # the first full chunk starts the writer process
    os.kill(_writer_pid(recorder), signal.SIGSTOP)  # and now it makes no progress at all
    try:
        seeded_stream(recorder, 3000, seed=8)  # 93 more full chunks: adding never waits
        requests, queries = recorder.chunks()
        assert requests.files_created > 20  # the chunks wait on disk for the writer ...
        mapped = _mapped_spill_files()
        assert len(mapped) <= 2, mapped  # ... while this process maps only the sets it fills
        assert recorder.requests_recorded == 3040
    finally:
        os.kill(_writer_pid(recorder), signal.SIGCONT)
    stats = recorder.close()
    assert stats.scheduled == 3040 - 40 - 50  # every measured record folded, in the end
    assert pq.ParquetFile(tmp_path / "r.parquet").metadata.num_rows == 3040
    assert pq.ParquetFile(tmp_path / "q.parquet").metadata.num_rows == 10 + 750
    assert not list(tmp_path.glob(".caliper-spill-*"))  # spill files removed


def test_the_writer_process_is_lowest_priority_ignores_ctrl_c_and_exits_at_close(
        tmp_path: Path) -> None:
    recorder = Recorder(path=tmp_path / "r.parquet", chunk_rows=16)
    seeded_stream(recorder, 20)
    pid = _writer_pid(recorder)
    if hasattr(os, "SCHED_IDLE"):
        deadline = time.monotonic() + 30
        while os.sched_getscheduler(pid) != os.SCHED_IDLE and time.monotonic() < deadline:
            time.sleep(0.01)  # it lowers itself first thing after starting
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    os.kill(pid, signal.SIGINT)  # a Ctrl-C reaches the whole process group
    seeded_stream(recorder, 200, seed=9)
    stats = recorder.close()
    assert stats.scheduled == 220 - 20 - 50
    assert recorder._writer is not None and recorder._writer.process.returncode == 0
    assert recorder.writer_usage["cpu_s"] > 0 and recorder.writer_usage["peak_rss_mb"] > 0


def test_a_writer_killed_mid_run_is_reported_at_close(tmp_path: Path) -> None:
    recorder = Recorder(path=tmp_path / "r.parquet", chunk_rows=16)
    seeded_stream(recorder, 20)
    process = recorder._writer.process  # type: ignore[union-attr]
    process.kill()
    process.wait()
    seeded_stream(recorder, 200, seed=9)  # the run goes on
    with pytest.raises(RuntimeError, match="writer process ended.*exit code -9"):
        recorder.close()
    assert not list(tmp_path.glob(".caliper-spill-*"))


def test_the_writer_starts_with_a_records_file_or_else_when_a_chunk_fills(
        tmp_path: Path) -> None:
    with_file = Recorder(path=tmp_path / "r.parquet", chunk_rows=1000)
    assert with_file._writer is not None  # started during set-up, not mid-run
    seeded_stream(with_file, 400)
    assert with_file.close().scheduled == 350
    assert pq.ParquetFile(tmp_path / "r.parquet").metadata.num_rows == 400
    without = Recorder(chunk_rows=1000)
    seeded_stream(without, 400)
    assert without._writer is None  # no file and no full chunk: no process at all
    assert without.close().scheduled == 350
    assert without._writer is None


def test_every_row_of_many_chunks_is_written_by_either_path(tmp_path: Path) -> None:
    recorder = Recorder(path=tmp_path / "r.parquet", chunk_rows=32)
    seeded_stream(recorder, 2000)  # 62 full chunks
    recorder.close()
    assert pq.ParquetFile(tmp_path / "r.parquet").metadata.num_rows == 2000
    inline = Recorder(path=tmp_path / "i.parquet", chunk_rows=32, background=False)
    seeded_stream(inline, 2000)
    inline.close()
    assert pq.ParquetFile(tmp_path / "i.parquet").metadata.num_rows == 2000


def test_codes_and_error_kinds_come_back_as_the_texts_recorded(tmp_path: Path) -> None:
    # Kept as ids of interned texts while running; every chunk's file rows carry the texts,
    # including kinds first seen after earlier chunks went to the writer.
    recorder = Recorder(path=tmp_path / "r.parquet", chunk_rows=16)
    expected = []
    for i in range(100):
        code = "" if i % 10 == 9 else ("200" if i % 3 else f"5{i % 4:02d}")
        kind = "" if code in ("", "200") else f"http_{code}" + ("_late" if i > 60 else "")
        status = Status.OK if code == "200" else Status.ERROR
        recorder.add(i, -1, BASE + i, BASE + i + 1,
                     Outcome(status, BASE + i + 2, BASE + i + 3, BASE + i + 4, BASE + i + 5,
                             code=code, error_kind=kind, error_message="x" if kind else ""),
                     rows=1, warmup=False, base_ns=BASE)
        expected.append((code, kind))
    recorder.close()
    table = read_records(tmp_path / "r.parquet")
    assert list(zip(table["code"].to_pylist(), table["error_kind"].to_pylist(),
                    strict=True)) == expected
