"""Quantities with units: link rates, durations, sizes and integer lists, and their errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcaliper.errors import UsageError
from modelcaliper.units import (
    format_bytes,
    format_link_rate,
    parse_duration,
    parse_int_list,
    parse_link_rate,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "bits_per_s"),
    [
        ("1gbit", 1e9),  # the default spelling
        ("100mbit", 100e6),  # lower-case prefix
        ("10kbit", 10e3),  # kilo
        ("1Gbit", 1e9),  # capital prefix
        ("100Mbps", 100e6),  # bps suffix
        ("10 Mbps", 10e6),  # space between number and unit
        ("1 Gbit/s", 1e9),  # per-second spelled out
        ("2.5gbit", 2.5e9),  # fractional
        ("1e9", 1e9),  # scientific notation, plain bits per second
        ("1000", 1000.0),  # plain number = bit/s
        ("56kbps", 56e3),  # decimal multipliers, not 1024
        (1e9, 1e9),  # a number passed through
    ],
)
def test_link_rates(text, bits_per_s):
    assert parse_link_rate(text) == pytest.approx(bits_per_s)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("fast", "--link must look like 100mbit or 1gbit, got 'fast'"),  # not a quantity
        ("1g", "must look like"),  # a prefix alone could mean bytes or bits
        ("1GB/s", "bits per second"),  # bytes per second, not bits
        ("10MBps", "bits per second"),  # bytes again
        ("0gbit", "above zero"),  # a link that moves nothing
        ("-1gbit", "must look like"),  # negative
        ("", "must look like"),  # empty
    ],
)
def test_bad_link_rates(text, fragment):
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(")):
        parse_link_rate(text)


def test_link_rate_error_names_the_flag():
    with pytest.raises(UsageError, match="--reference-link"):
        parse_link_rate("slow", "--reference-link")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),  # milliseconds
        ("2s", 2.0),  # seconds
        ("1m", 60.0),  # minutes
        ("1.5m", 90.0),  # fractional minutes
        ("100us", 100e-6),  # microseconds
        ("100µs", 100e-6),  # micro sign
        ("5ns", 5e-9),  # nanoseconds
        ("2h", 7200.0),  # hours
        ("3", 3.0),  # plain number = seconds
        ("0s", 0.0),  # zero is a valid duration
        (" 10 ms ", 0.01),  # spaces
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "soon",  # not a quantity
        "10x",  # unknown unit
        "-1s",  # negative
        "ms",  # unit without number
    ],
)
def test_bad_durations(text):
    with pytest.raises(UsageError, match="--deadline must look like 250ms, 2s or 1m"):
        parse_duration(text, "--deadline")


@pytest.mark.parametrize(
    ("text", "size_bytes"),
    [
        ("64mb", 64_000_000),  # decimal megabytes
        ("64MB", 64_000_000),  # case does not matter
        ("512KiB", 524_288),  # binary kibibytes
        ("1gib", 1024**3),  # binary gibibytes
        ("1.5GB", 1_500_000_000),  # fractional
        ("100", 100),  # plain number = bytes
        ("7b", 7),  # explicit bytes
        ("2 bytes", 2),  # spelled out
    ],
)
def test_sizes(text, size_bytes):
    assert parse_size(text) == size_bytes


@pytest.mark.parametrize(
    "text",
    [
        "big",  # not a quantity
        "1i",  # binary marker without a prefix
        "3 parsecs",  # unknown unit
    ],
)
def test_bad_sizes(text):
    with pytest.raises(UsageError, match="--max-body must look like 512kb, 64mb or 1gib"):
        parse_size(text, "--max-body")


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("5,25", [5, 25]),  # comma-separated
        ("5, 25", [5, 25]),  # spaces after commas
        ("5 25", [5, 25]),  # space-separated
        ("1", [1]),  # a single value
        (7, [7]),  # an int passed through
        (["3", "4"], [3, 4]),  # a list of strings
    ],
)
def test_int_lists(text, values):
    assert parse_int_list(text) == values


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("5,x", "--batch-size must be a comma-separated list of integers like 5,25, got '5,x'"),
        ("", "comma-separated list"),  # nothing at all
        ("0,5", "--batch-size must be ≥ 1, got 0"),  # below the minimum
        ("2.5", "comma-separated list"),  # not an integer
    ],
)
def test_bad_int_lists(text, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_int_list(text)


def test_int_list_minimum_can_be_lifted():
    assert parse_int_list("0,-1", "--offsets", minimum=None) == [0, -1]


@pytest.mark.parametrize(
    ("bits_per_s", "text"),
    [
        (1e9, "1 Gbit/s"),
        (100e6, "100 Mbit/s"),
        (2.5e9, "2.5 Gbit/s"),
        (56e3, "56 kbit/s"),
        (300, "300 bit/s"),
    ],
)
def test_format_link_rate(bits_per_s, text):
    assert format_link_rate(bits_per_s) == text


@pytest.mark.parametrize(
    ("size_bytes", "text"),
    [(812, "812 B"), (14_234, "14.2 kB"), (3_100_000, "3.1 MB"), (2e9, "2 GB")],
)
def test_format_bytes(size_bytes, text):
    assert format_bytes(size_bytes) == text


@given(st.integers(min_value=1, max_value=9999), st.sampled_from(["kbit", "mbit", "gbit"]))
def test_formatted_rates_parse_back(number, unit):
    rate = parse_link_rate(f"{number}{unit}")
    assert parse_link_rate(format_link_rate(rate).replace(" ", "")) == pytest.approx(rate)
