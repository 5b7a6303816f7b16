"""The live progress line: totals, the recent window, warm-up, misses, saturation, TTY or not."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np

from modelcaliper.cli.progress import ProgressLine
from modelcaliper.load.live import LiveBatch
from modelcaliper.load.transport import Status


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def batch(*, worker: int = 0, dispatched: int, done_s: list[float], latency_ms: list[float],
          status: list[int] | None = None, lag_ms: float = 0.01, warmup: bool = False,
          missed: list[bool] | None = None) -> LiveBatch:
    done = np.array([round(s * 1e9) for s in done_s], dtype=np.int64)
    intended = done - np.array([round(ms * 1e6) for ms in latency_ms], dtype=np.int64)
    dispatched_ns = intended + round(lag_ms * 1e6)
    n = len(done)
    missed = missed or []
    return LiveBatch(worker, dispatched, {
        "intended_ns": intended, "dispatched_ns": dispatched_ns, "done_ns": done,
        "status": np.array(status or [Status.OK] * n, dtype=np.int8),
        "warmup": np.full(n, warmup)}, {
        "intended_ns": np.zeros(len(missed), np.int64), "done_ns": np.zeros(len(missed), np.int64),
        "missed": np.array(missed, dtype=bool), "warmup": np.zeros(len(missed), bool)})


def started(line: ProgressLine, *, fanout: bool = False, warmup_s: float = 2.0) -> ProgressLine:
    load = SimpleNamespace(warmup_s=warmup_s, duration_s=10.0, fanout=fanout)
    line.start(SimpleNamespace(load=load), SimpleNamespace(offsets_s=np.array([0.0, 11.9])))
    return line


def test_plain_lines_show_totals_and_recent_percentiles() -> None:
    clock, out = FakeClock(), io.StringIO()
    line = started(ProgressLine(out, tty=False, plain_interval_s=5.0, clock=clock))
    line.update(batch(dispatched=10, done_s=[0.5] * 10, latency_ms=[1.0] * 9 + [50.0],
                      warmup=True))
    assert out.getvalue().count("\n") == 1  # the first batch prints at once
    first = out.getvalue()
    assert "0.5/12.0s" in first and "sent 10" in first and "warm-up" in first
    clock.now += 3.0  # within the 5 s interval: nothing printed
    line.update(batch(dispatched=40, done_s=[3.5] * 2, latency_ms=[2.0, 2.0],
                      status=[Status.ERROR, Status.TIMEOUT]))
    assert out.getvalue() == first
    clock.now += 3.0  # 6.5 s into the run: the earlier batch left the 5 s window
    line.update(batch(dispatched=60, done_s=[6.5] * 4, latency_ms=[3.0] * 4))
    last = out.getvalue().splitlines()[-1]
    assert "6.5/12.0s" in last and "sent 60 (9.2 req/s)" in last
    assert "p50 3ms" in last and "p99 3ms" in last  # only the last 5 s
    assert "errors 1" in last and "timeouts 1" in last
    assert "warm-up" not in last and "misses" not in last


def test_a_terminal_gets_one_line_rewritten_in_place_and_cleared() -> None:
    clock, out = FakeClock(), io.StringIO()
    line = started(ProgressLine(out, tty=True, tty_interval_s=0.25, clock=clock))
    line.update(batch(dispatched=5, done_s=[0.2], latency_ms=[1.0]))
    clock.now += 0.5
    line.update(batch(dispatched=30, done_s=[0.7], latency_ms=[1.0]))
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") == 2
    line.finish()
    assert out.getvalue().endswith("\r") and "\n" not in out.getvalue()


def test_queries_count_deadline_misses_and_workers_add_up() -> None:
    clock, out = FakeClock(), io.StringIO()
    line = started(ProgressLine(out, tty=False, clock=clock), fanout=True, warmup_s=0.0)
    line.update(batch(worker=0, dispatched=4, done_s=[1.0], latency_ms=[9.0],
                      missed=[True, False]))
    line.update(batch(worker=1, dispatched=6, done_s=[1.0], latency_ms=[9.0], missed=[True]))
    text = line.render()
    assert "sent 10 (10.0 queries/s)" in text and "misses 2" in text


def test_a_late_generator_is_flagged() -> None:
    clock, out = FakeClock(), io.StringIO()
    line = started(ProgressLine(out, tty=False, clock=clock))
    line.update(batch(dispatched=3, done_s=[1.0] * 3, latency_ms=[5.0] * 3, lag_ms=4.0))
    assert "! generator late (lag p99 4ms)" in line.render()
    line2 = started(ProgressLine(io.StringIO(), tty=False, clock=clock))
    line2.update(batch(dispatched=3, done_s=[1.0] * 3, latency_ms=[5.0] * 3, lag_ms=0.2))
    assert "generator late" not in line2.render()
