"""The live tap: every record a recorder adds is handed out once, across reused chunks."""

from __future__ import annotations

import numpy as np
import pytest

from modelcaliper.load.live import LiveTap
from modelcaliper.load.records import Recorder
from modelcaliper.load.transport import Outcome, Status


def add(recorder: Recorder, index: int) -> None:
    outcome = Outcome(Status.OK if index % 3 else Status.TIMEOUT, sent_ns=10 + index,
                      written_ns=11 + index, first_byte_ns=12 + index, done_ns=20 + index)
    recorder.add(index, -1, index, 5 + index, outcome, 1, index < 2, 0)


@pytest.mark.parametrize(("chunk_rows", "takes"), [
    # takes between chunk reuses: nothing to keep aside
    (64, [10, 20, 30]),
    # several chunk reuses between two takes: the untaken rows are kept
    (4, [3, 11, 25, 1]),
    # a take exactly at a chunk boundary, then an empty take
    (5, [5, 0, 7]),
])
def test_every_record_is_taken_exactly_once(chunk_rows: int, takes: list[int]) -> None:
    recorder = Recorder(chunk_rows=chunk_rows)
    tap = LiveTap(recorder)
    seen: list[np.ndarray] = []
    statuses: list[np.ndarray] = []
    index = 0
    for count in takes:
        for _ in range(count):
            add(recorder, index)
            index += 1
        batch = tap.take(units_dispatched=index)
        assert batch.units_dispatched == index and batch.worker == 0
        seen.append(batch.requests["intended_ns"])
        statuses.append(batch.requests["status"])
    recorder.close()
    last = tap.take()  # what closing folded last
    seen.append(last.requests["intended_ns"])
    statuses.append(last.requests["status"])
    assert np.concatenate(seen).tolist() == list(range(index))
    assert np.concatenate(statuses).tolist() == [
        Status.OK if i % 3 else Status.TIMEOUT for i in range(index)]


def test_a_batch_carries_the_columns_a_display_needs() -> None:
    recorder = Recorder(chunk_rows=8)
    tap = LiveTap(recorder)
    for i in range(3):
        add(recorder, i)
    recorder.add_query(0, 0, 50, 3, 3, True, False, 0)
    batch = tap.take(3)
    assert batch.requests["status"].tolist() == [Status.TIMEOUT, Status.OK, Status.OK]
    assert batch.requests["warmup"].tolist() == [True, True, False]
    assert (batch.requests["dispatched_ns"] - batch.requests["intended_ns"]).tolist() == [5] * 3
    assert batch.queries["missed"].tolist() == [True]
