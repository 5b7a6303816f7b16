"""Load flags → LoadSpec: every mistake is a one-line UsageError naming the flag (exit 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from modelcaliper.cli.main import CaliperArgumentParser, main
from modelcaliper.errors import UsageError
from modelcaliper.load.flags import DEFAULT_DURATION_S, add_load_flags, parse_steps, spec_from_args
from modelcaliper.load.pool import unit_requests
from modelcaliper.signature import Signature, TensorSpec


def parse(*argv: str) -> argparse.Namespace:
    parser = CaliperArgumentParser(prog="test")
    add_load_flags(parser)
    return parser.parse_args(list(argv))


def spec(*argv: str):  # type: ignore[no-untyped-def]
    return spec_from_args(parse(*argv))


BAD_FLAGS = [
    # rates
    (["--rps", "fast"], "--rps must be a number, got 'fast'"),
    (["--rps", "0"], "--rps must be a finite number > 0"),
    (["--rps", "-5"], "--rps must be a finite number > 0"),
    (["--rps", "inf"], "--rps must be a finite number > 0"),
    ([], "--arrival constant needs --rps"),
    (["--arrival", "steps", "--rps", "5", "--steps", "1s:5"], "--rps does not apply"),
    (["--arrival", "wave", "--rps", "5"], "--arrival must be one of"),
    # durations
    (["--rps", "5", "--duration", "soon"], "--duration must look like 250ms, 2s or 1m"),
    (["--rps", "5", "--duration=-1s"], "--duration must look like"),
    (["--rps", "5", "--warmup", "5parsecs"], "--warmup must look like"),
    (["--rps", "5", "--timeout", "0"], "--timeout must be a finite duration > 0"),
    (["--rps", "5", "--deadline", "fast"], "--deadline must look like"),
    # counts and seeds
    (["--rps", "5", "--requests", "ten"], "--requests must be a whole number, got 'ten'"),
    (["--rps", "5", "--batch-size", "0"], "--batch-size must be ≥ 1, got 0"),
    (["--rps", "5", "--seed", "-3"], "--seed must be ≥ 0, got -3"),
    (["--rps", "5", "--seed", "1.5"], "--seed must be a whole number"),
    (["--rps", "5", "--data-seed", "x"], "--data-seed must be a whole number"),
    (["--rps", "5", "--seed", str(2**64)], "--seed must be below 2\\*\\*63"),
    (["--rps", "5", "--workers", "0"], "--workers must be ≥ 1"),
    (["--rps", "5", "--connections", "0"], "--connections must be ≥ 1"),
    # limits and fan-out
    (["--rps", "5", "--on-overload", "drop"], "--on-overload drop needs --max-in-flight"),
    (["--rps", "5", "--on-overload", "later"], "--on-overload must be queue or drop"),
    (["--rps", "5", "--deadline", "250ms"], "--deadline applies to fanned-out queries"),
    (["--rps", "5", "--candidates", "10", "--on-deadline", "cancel"],
     "--on-deadline cancel needs"),
    # arrival parameters
    (["--rps", "5", "--burst-multiplier", "3"], "--burst-multiplier does not apply"),
    (["--arrival", "bursty", "--rps", "5", "--burst-multiplier", "big"],
     "--burst-multiplier must be a number"),
    (["--arrival", "bursty", "--rps", "5", "--burst-duration", "0s"],
     "--burst-duration must be > 0"),
    (["--arrival", "steps", "--steps", "10s"], "--steps must look like"),
    (["--arrival", "steps"], "--arrival steps needs --steps"),
    (["--arrival", "replay"], "--arrival replay needs --replay"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS)
def test_bad_flags_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        spec(*argv)


def test_bad_flags_exit_2_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    # validated before the target is contacted: nothing listens on port 9
    code = main(["run", "--target", "http://127.0.0.1:9", "--protocol", "v2-rest",
                 "--model", "m", "--rps", "fast"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == "error: UsageError: --rps must be a number, got 'fast'"


REPLAY_FILES = [
    # no such file
    (None, "cannot read replay file"),
    # not timestamps at all
    ("when\nnever\nlater\n", "replay"),
    # timestamps going backwards
    ("timestamp\n3\n2\n1\n", "must be sorted by time"),
]


@pytest.mark.parametrize(("content", "message"), REPLAY_FILES)
def test_bad_replay_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "arrivals.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message):
        spec("--arrival", "replay", "--replay", str(path))


def test_good_flags_build_the_spec(tmp_path: Path) -> None:
    s = spec("--rps", "20", "--duration", "1m", "--warmup", "500ms", "--batch-size", "25",
             "--candidates", "1000", "--deadline", "250ms", "--on-deadline", "cancel",
             "--timeout", "2s", "--max-in-flight", "64", "--on-overload", "drop",
             "--connections", "4", "--workers", "2", "--seed", "7", "--data-seed", "9",
             "--per-query-concurrency", "8", "--requests", "100")
    assert (s.rate_per_s, s.duration_s, s.warmup_s) == (20.0, 60.0, 0.5)
    assert (s.batch_size, s.candidates, s.requests_per_unit) == (25, 1000, 40)
    assert (s.deadline_s, s.on_deadline, s.timeout_s) == (0.25, "cancel", 2.0)
    assert (s.max_in_flight, s.on_overload, s.connections, s.workers) == (64, "drop", 4, 2)
    assert (s.seed, s.data_seed, s.per_query_concurrency, s.max_requests) == (7, 9, 8, 100)
    assert s.offered_rps == pytest.approx(800)


DEFAULT_DURATIONS = [
    (["--rps", "5"], DEFAULT_DURATION_S),  # nothing said: the default duration
    (["--rps", "5", "--requests", "10"], 0.0),  # a count alone bounds the run
    (["--arrival", "steps", "--steps", "1s:5"], 0.0),  # the schedule's own length
    (["--rps", "5", "--duration", "0", "--requests", "3"], 0.0),  # explicitly unbounded
]


@pytest.mark.parametrize(("argv", "duration_s"), DEFAULT_DURATIONS)
def test_duration_defaults(argv: list[str], duration_s: float) -> None:
    assert spec(*argv).duration_s == duration_s


def test_steps_and_bursty_parameters(tmp_path: Path) -> None:
    assert parse_steps("10s:50, 10s:100") == "10s@50,10s@100"
    assert parse_steps("1m@5") == "1m@5"
    steps = spec("--arrival", "steps", "--steps", "1s:10,500ms:0,1s:20")
    assert len(steps.plan().offsets_s) == 30
    bursty = spec("--arrival", "bursty", "--rps", "40", "--burst-multiplier", "4",
                  "--burst-duration", "200ms", "--calm-duration", "2s", "--duration", "5s")
    assert bursty.unit_rate_per_s == pytest.approx(40)
    replay = tmp_path / "arrivals.csv"
    replay.write_text("ts\n0\n0.5\n1.0\n2.0\n")
    s = spec("--arrival", "replay", "--replay", str(replay), "--replay-speed", "2")
    assert np.allclose(s.plan().offsets_s, [0, 0.25, 0.5, 1.0])


def test_fanout_larger_than_the_data_is_a_usage_error() -> None:
    signature = Signature((TensorSpec("x", "float32", (-1,)),))
    columns = {"x": np.zeros(30, np.float32)}
    with pytest.raises(UsageError, match="--candidates 100 needs at least 100 rows"):
        list(unit_requests(columns, signature, batch_size=10, candidates=100))
    # enough rows: queries of 100 in requests of 10
    columns = {"x": np.zeros(250, np.float32)}
    units = list(unit_requests(columns, signature, batch_size=30, candidates=100))
    assert len(units) == 2
    assert [r.batch_size for r in units[0]] == [30, 30, 30, 10]
