"""Replay schedules: reading CSV / JSON-lines timestamps, units, speed, and file errors."""

from __future__ import annotations

import numpy as np
import pytest

from modelcaliper.errors import DataError, UsageError
from modelcaliper.load import Replay, parse_arrival
from modelcaliper.load.replay import read_timestamps


@pytest.mark.parametrize(
    ("name", "content", "expected_s"),
    [
        # header with a 'timestamp' column that is not the first one
        ("a.csv", "user,timestamp\nu1,1714564800.0\nu2,1714564800.5\nu3,1714564802\n",
         [0.0, 0.5, 2.0]),
        # 'ts' column, epoch milliseconds (magnitude above 1e11)
        ("b.csv", "ts,x\n1714564800000,1\n1714564800250,2\n", [0.0, 0.25]),
        # no header at all: first column, epoch microseconds
        ("c.csv", "1714564800000000\n1714564800000500\n", [0.0, 0.0005]),
        # a header with no recognised name: its first column is used
        ("d.csv", "when,what\n10,a\n12.5,b\n", [0.0, 2.5]),
        # 'time' column holding ISO-8601 with a zone, and one without (read as UTC)
        ("e.csv", "time\n2024-05-01T12:00:00Z\n2024-05-01T12:00:01.250+00:00\n"
         "2024-05-01T12:00:03\n", [0.0, 1.25, 3.0]),
        # JSON lines with 'timestamp', epoch nanoseconds, blank lines skipped
        ("f.jsonl", '{"timestamp": 1714564800000000000}\n\n{"timestamp": 1714564800100000000}\n',
         [0.0, 0.1]),
        # JSON lines with 'ts' as ISO text, detected by the leading brace despite the suffix
        ("g.log", '{"ts": "2024-05-01T12:00:00Z", "q": 1}\n{"ts": "2024-05-01T12:00:02Z"}\n',
         [0.0, 2.0]),
        # relative seconds and equal timestamps (a burst in the same instant) are fine
        ("h.csv", "timestamp\n0\n0\n0.75\n", [0.0, 0.0, 0.75]),
    ],
)
def test_timestamps_are_read_and_rebased(tmp_path, name, content, expected_s):
    path = tmp_path / name
    path.write_text(content)
    assert read_timestamps(path) == pytest.approx(expected_s, abs=1e-9)


def test_explicit_unit_overrides_the_magnitude_rule(tmp_path):
    path = tmp_path / "ms.csv"
    path.write_text("ts\n0\n15\n40\n")  # relative milliseconds would be read as seconds
    assert read_timestamps(path) == pytest.approx([0.0, 15.0, 40.0])
    assert read_timestamps(path, "ms") == pytest.approx([0.0, 0.015, 0.040])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("timestamp\n3\n1\n", r":3: timestamp '1' is earlier than the one on line 2"),  # unsorted
        ("timestamp\n", "no timestamps found"),  # header only
        ("", "no timestamps found"),  # empty file
        ("timestamp\n1\nsoon\n", r":3: timestamp 'soon' is neither a number nor an ISO-8601"),
        ("timestamp\n1\n2024-05-01T12:00:00Z\n", ":3: mixes ISO-8601 and numeric"),
        ("timestamp\n1\ninf\n", r":3: timestamp 'inf' is neither"),  # not finite
    ],
)
def test_bad_csv_files_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        read_timestamps(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"ts": 1}\n{"when": 2}\n', ":2: no 'timestamp' or 'ts' field"),  # missing field
        ('{"ts": 1}\n{"ts": \n', ":2: not valid JSON"),  # broken line
        ('{"ts": 1}\n[1, 2]\n', ":2: expected a JSON object"),  # not an object
        ('{"ts": 5}\n{"ts": 4}\n', ":2: timestamp 4 is earlier than the one on line 1"),
        ('{"ts": true}\n', ":1: timestamp True is neither"),  # a boolean is not a time
    ],
)
def test_bad_json_lines_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_timestamps(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read replay file"):
        Replay(str(tmp_path / "nope.csv")).arrivals(None, np.random.default_rng(0))


def test_bad_unit_is_a_usage_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("1\n2\n")
    with pytest.raises(UsageError, match="--replay-unit must be one of"):
        read_timestamps(path, "minutes")


def test_replay_schedule_speed_bounds_and_chunks(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("timestamp\n" + "\n".join(str(100 + i * 0.5) for i in range(11)) + "\n")
    schedule = Replay(str(path), speed=2.0)
    offsets = schedule.arrivals(None, np.random.default_rng(0))
    assert offsets == pytest.approx(np.arange(11) * 0.25)  # rebased, then twice as fast
    assert len(schedule.arrivals(1.0, np.random.default_rng(0))) == 4  # 0, .25, .5, .75
    assert len(schedule.arrivals(None, np.random.default_rng(0), max_count=3)) == 3
    chunks = list(schedule.iter_arrivals(None, np.random.default_rng(0), chunk=4))
    assert [len(c) for c in chunks] == [4, 4, 3]
    assert schedule.describe()["count"] == 11
    assert schedule.mean_rate_per_s == pytest.approx(4.0)


def test_parse_arrival_reads_the_file_up_front(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("timestamp\n2\n1\n")
    with pytest.raises(DataError, match="earlier than"):
        parse_arrival("replay", replay=str(path))
    path.write_text("timestamp\n1\n2\n")
    built = parse_arrival("replay", replay=str(path), replay_speed="4", replay_unit="ms")
    assert built.arrivals(None, np.random.default_rng(0)) == pytest.approx([0.0, 0.00025])
