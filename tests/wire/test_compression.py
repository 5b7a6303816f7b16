"""Body compression: round trips, levels, and bounded decompression."""

from __future__ import annotations

import gzip
import zlib

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from modelcaliper.errors import PayloadTooLargeError, UsageError, WireError
from modelcaliper.wire.compression import COMPRESSIONS, compress, decompress, parse_compression

DATA = b"feature_name_0123456789," * 4000


@pytest.mark.parametrize("codec", COMPRESSIONS)
def test_round_trip(codec):
    assert decompress(compress(DATA, codec), codec) == DATA


def test_formats_are_the_standard_ones():
    assert gzip.decompress(compress(DATA, "gzip")) == DATA  # RFC 1952
    assert zlib.decompress(compress(DATA, "deflate")) == DATA  # RFC 1950, as HTTP 'deflate'
    assert zstandard.ZstdDecompressor().decompress(compress(DATA, "zstd")) == DATA


def test_levels_change_the_output_and_are_validated():
    assert len(compress(DATA, "gzip", 1)) >= len(compress(DATA, "gzip", 9))
    with pytest.raises(UsageError, match="between 0 and 9"):
        compress(DATA, "gzip", 10)
    with pytest.raises(UsageError, match="between 1 and 22"):
        compress(DATA, "zstd", 0)


@pytest.mark.parametrize("codec", ["gzip", "deflate", "zstd"])
def test_bombs_are_cut_off_at_the_limit(codec):
    bomb = compress(b"\x00" * 20_000_000, codec)
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLargeError, match="limit"):
        decompress(bomb, codec, max_bytes=1_000_000)


@pytest.mark.parametrize("codec", ["gzip", "deflate", "zstd"])
def test_truncated_and_corrupt_bodies_are_errors(codec):
    body = compress(DATA, codec)
    with pytest.raises(WireError):
        decompress(body[: len(body) // 2], codec)
    with pytest.raises(WireError):
        decompress(b"not compressed at all", codec)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("gzip", "gzip"), ("GZIP", "gzip"), ("identity", "none"), ("none", "none"), ("zstd", "zstd")],
)
def test_parse_compression(name, expected):
    assert parse_compression(name) == expected


def test_parse_compression_rejects_unknown_names():
    with pytest.raises(UsageError, match="brotli"):
        parse_compression("brotli")


@given(st.binary(max_size=2000), st.sampled_from(COMPRESSIONS))
def test_any_bytes_round_trip(data, codec):
    assert decompress(compress(data, codec), codec) == data
