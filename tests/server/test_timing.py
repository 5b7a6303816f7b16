"""Server-Timing: formatting, parsing, and the phase timer."""

from __future__ import annotations

import time

import pytest

from modelcaliper.server.timing import PhaseTimer, format_server_timing, parse_server_timing


def test_format_uses_canonical_order_and_milliseconds():
    value = format_server_timing({"total": 1.5, "recv": 0.0123456, "compute": 1.0, "custom": 2})
    assert value == "recv;dur=0.012, compute;dur=1.000, total;dur=1.500, custom;dur=2.000"


def test_round_trip():
    phases = {"recv": 0.01, "decode": 0.2, "queue": 0.0, "compute": 3.25, "total": 3.5}
    assert parse_server_timing(format_server_timing(phases)) == pytest.approx(phases, abs=1e-3)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("db;dur=53", {"db": 53.0}),  # the W3C example
        ('cache;desc="Cache Read";dur=23.2', {"cache": 23.2}),  # dur after desc
        ("miss, db;dur=53, app;dur=47.2", {"db": 53.0, "app": 47.2}),  # metric without dur
        (["a;dur=1", "b;dur=2"], {"a": 1.0, "b": 2.0}),  # several header lines
        ("a;dur=x, b;dur=2", {"b": 2.0}),  # malformed duration ignored
        ('a;dur="4"', {"a": 4.0}),  # quoted value
        ("", {}),
        (None, {}),
    ],
)
def test_parse_is_lenient(header, expected):
    assert parse_server_timing(header) == expected


def test_phase_timer_laps_add_up_to_total():
    timer = PhaseTimer()
    time.sleep(0.002)
    timer.lap("decode")
    timer.add("queue", 1_000_000)
    time.sleep(0.001)
    timer.lap("compute")
    phases = timer.finish()
    assert phases["decode"] >= 2.0
    assert phases["queue"] == 1.0
    assert phases["compute"] >= 1.0
    # equal, as total runs to the last lap; 1e-9 ms absorbs the ns→ms rounding
    assert phases["total"] >= phases["decode"] + phases["compute"] - 1e-9


def test_total_runs_to_the_last_lap_so_laps_add_up_exactly():
    timer = PhaseTimer()
    timer.lap("decode")
    end_ns = timer.lap("encode")
    time.sleep(0.002)  # after the last lap: the caller's own business, not a phase
    phases = timer.finish()
    assert phases["total"] == (end_ns - timer.start_ns) / 1e6
    assert phases["decode"] + phases["encode"] == pytest.approx(phases["total"], abs=1e-9)


def test_total_runs_to_now_when_nothing_was_lapped():
    timer = PhaseTimer()
    time.sleep(0.002)
    assert timer.finish()["total"] >= 2.0
