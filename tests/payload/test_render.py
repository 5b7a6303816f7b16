"""Rendering a payload report: the terminal tables and the JSON file."""

from __future__ import annotations

import orjson
import pytest

from modelcaliper.errors import UsageError
from modelcaliper.payload.analysis import PayloadReport, PayloadRow
from modelcaliper.payload.render import render_report, render_table, write_json


def make_row(encoding: str, compression: str, batch_size: int, request_bytes: int) -> PayloadRow:
    return PayloadRow(
        encoding=encoding,
        compression=compression,
        batch_size=batch_size,
        requests=8,
        mean_rows=batch_size,
        request_bytes=request_bytes,
        uncompressed_request_bytes=12_000,
        response_bytes=100,
        uncompressed_response_bytes=100,
        encode_us=12.345,
        decode_us=1234.5,
        wire_ms=0.0968,
        wire_ms_100mbit=0.968,
    )


REPORT = PayloadReport(
    rows=[
        make_row("v2-grpc", "none", 5, 12_000),
        make_row("v2-grpc", "gzip", 5, 3_000),
        make_row("v2-grpc", "none", 25, 60_000),
    ],
    what_if={
        "shared_context": {
            "group_by": "query_id",
            "columns": ["user_country"],
            "note": None,
            "results": [
                {
                    "batch_size": 5,
                    "encoding": "v2-grpc",
                    "request_bytes": 12_000,
                    "shared_request_bytes": 11_000,
                    "saving_bytes": 1_000,
                    "saving_pct": 8.33,
                    "gzip_request_bytes": 3000,
                    "gzip_shared_request_bytes": 2900,
                    "gzip_saving_pct": 3.33,
                },
                {"batch_size": 5, "encoding": "tfserving-rest rows", "error": "cannot: reasons"},
            ],
        },
        "short_names": {"results": []},
    },
    link_bits_per_s=1e9,
    skipped=[{"encoding": "v2-grpc", "compression": "zstd", "reason": "grpc does not offer zstd"}],
)


def test_render_table_aligns_columns():
    text = render_table(["name", "bytes"], [["a", "1"], ["long name", "12,345"]], left_columns=1)
    assert text.splitlines() == [
        "name        bytes",
        "---------  ------",
        "a               1",
        "long name  12,345",
    ]


def test_report_groups_rows_by_batch_size():
    text = render_report(REPORT)
    lines = text.splitlines()
    first, second = (
        lines.index(next(x for x in lines if x.startswith("batch size 5 "))),
        lines.index(next(x for x in lines if x.startswith("batch size 25 "))),
    )
    assert first < second
    header = lines[first + 1]
    for column in (
        "encoding",
        "compression",
        "request bytes",
        "ratio",
        "response bytes",
        "encode µs",
        "decode µs",
        "wire ms @1 Gbit/s",
        "wire ms @100 Mbit/s",
    ):
        assert column in header
    gzip_line = next(x for x in lines[first:second] if " gzip " in x)
    assert (
        "3,000" in gzip_line
        and "4.00" in gzip_line
        and "1,234" in gzip_line
        and "12.3" in gzip_line
    )


def test_report_shows_what_ifs_and_skips():
    text = render_report(REPORT)
    assert "not measured: v2-grpc + zstd (grpc does not offer zstd)" in text
    assert "context inputs (1): user_country" in text
    assert "tfserving-rest rows: cannot: reasons" in text
    assert "no JSON encoding was measured" in text


def test_rendering_is_deterministic():
    assert render_report(REPORT) == render_report(REPORT)


def test_json_schema(tmp_path):
    path = tmp_path / "deep" / "out.json"
    write_json(REPORT, path)
    doc = orjson.loads(path.read_bytes())
    assert set(doc) >= {"rows", "what_if"}
    first = doc["rows"][0]
    for key in (
        "encoding",
        "compression",
        "batch_size",
        "request_bytes",
        "response_bytes",
        "encode_us",
        "decode_us",
        "wire_ms",
    ):
        assert key in first
    assert first["compression_ratio"] == 1.0
    assert doc["what_if"]["shared_context"]["columns"] == ["user_country"]


def test_unwritable_json_path_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="cannot write --json file"):
        write_json(REPORT, blocker / "out.json")
