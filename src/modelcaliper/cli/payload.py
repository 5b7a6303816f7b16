"""``caliper payload``: what each wire encoding and compression would cost for a model."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

from modelcaliper.cli.dataflags import add_data_arguments, load_rows
from modelcaliper.errors import UsageError

__all__ = ["register", "resolve_compressions", "resolve_encodings", "run"]

NAME = "payload"
DEFAULT_MAX_REQUESTS = 8
MIN_QUERY_ROWS = 100
DEFAULT_DATA_ROWS = 1000

EXAMPLES = """\
examples:
  # every encoding and compression at batch sizes 5 and 25, signature read from the model
  caliper payload model.onnx --synthetic --batch-size 5,25

  # rows of the training data, each query's candidates kept together, results as JSON
  caliper payload saved_model/ --data train.parquet --group-by query_id --json payload.json

  # no model at hand: a signature file, synthetic rows, a 100 Mbit/s link
  caliper payload --signature examples/signatures/ranking.json --link 100mbit

  # two encodings, with and without gzip
  caliper payload --signature sig.json --encoding v2-grpc "tfserving-rest rows" \\
      --compression none,gzip

encodings: tfserving-rest rows, tfserving-rest columnar, tfserving-grpc, v2-rest json,
v2-rest binary, v2-grpc (or "all"; '-' may stand for the space). gRPC encodings take
none/gzip/deflate; REST ones also zstd. Bytes are body bytes, averaged per request.
"""


def register(subparsers: Any) -> None:
    """Add the ``payload`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        NAME,
        help="payload size and cost of each wire encoding and compression",
        description=(
            "Build requests for a model (synthetic rows or rows of a dataset), push them\n"
            "through every wire encoding and compression, and report the bytes on the wire,\n"
            "the encode/decode time, the transfer time, and what sending per-query context\n"
            "inputs once per request or shorter JSON names would save."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", nargs="?", metavar="MODEL", help="an .onnx file or a TF SavedModel directory"
    )
    parser.add_argument(
        "--signature", metavar="FILE", help="signature JSON file (overrides the model's)"
    )
    parser.add_argument(
        "--rows", type=int, metavar="N", help="rows to use (default: enough for 8 requests)"
    )
    parser.add_argument(
        "--batch-size", default="5,25", metavar="N,N", help="batch sizes (default 5,25)"
    )
    parser.add_argument(
        "--encoding",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="encodings to measure (default all)",
    )
    parser.add_argument(
        "--compression",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="none,gzip,deflate,zstd (default all)",
    )
    parser.add_argument(
        "--level", type=int, metavar="N", help="compression level (default: each codec's)"
    )
    parser.add_argument("--link", default="1gbit", help="link rate for wire time (default 1gbit)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of synthetic rows and responses (default 0)"
    )
    add_data_arguments(parser)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.set_defaults(run=run)


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _encoding_key(name: str) -> str:
    return re.sub(r"[\s_-]+", "-", name.strip().lower())


def resolve_encodings(values: list[str] | None) -> tuple[str, ...]:
    """Encoding names as given (spaces may be written as ``-``) → names of ``ENCODINGS``."""
    from modelcaliper.wire import ENCODINGS

    names = _split(values)
    if not names or any(n.lower() == "all" for n in names):
        return ENCODINGS
    by_key = {_encoding_key(e): e for e in ENCODINGS}
    chosen: list[str] = []
    for name in names:
        found = by_key.get(_encoding_key(name))
        if found is None:
            raise UsageError(f"unknown --encoding '{name}'; choose from: {', '.join(ENCODINGS)}")
        if found not in chosen:
            chosen.append(found)
    return tuple(chosen)


def resolve_compressions(values: list[str] | None, level: int | None) -> tuple[Any, ...]:
    """Compression names as given → validated names; the level is checked against each."""
    from modelcaliper.wire.compression import COMPRESSIONS, compress, parse_compression

    names = _split(values)
    chosen = (
        COMPRESSIONS if not names else tuple(dict.fromkeys(parse_compression(n) for n in names))
    )
    for name in chosen:
        compress(b"", name, level)  # raises a UsageError naming the valid range
    return chosen


def _synthetic_query_rows(batch_sizes: list[int]) -> int:
    """Rows per synthetic query: a multiple of every batch size, at least 100 when possible."""
    size = math.lcm(*batch_sizes)
    if size > 10 * max(batch_sizes):
        size = max(batch_sizes)  # batch sizes with no small common multiple: some short requests
    return size * math.ceil(MIN_QUERY_ROWS / size)


def _load_signature(args: argparse.Namespace) -> Any:
    from modelcaliper.signature import load_signature_file

    if args.signature:
        return load_signature_file(args.signature)
    if not args.model:
        raise UsageError(
            "caliper payload needs a signature: pass a MODEL (.onnx file or SavedModel directory) "
            "or --signature sig.json"
        )
    from modelcaliper.server.runtimes import read_signature

    return read_signature(args.model)


def run(args: argparse.Namespace) -> int:
    """Run ``caliper payload`` with parsed ``args``; returns the exit code."""
    from modelcaliper.payload import PayloadSettings, analyse_payload, render_report, write_json
    from modelcaliper.units import parse_int_list, parse_link_rate

    batch_sizes = parse_int_list(args.batch_size, "--batch-size", minimum=1)
    encodings = resolve_encodings(args.encoding)
    compressions = resolve_compressions(args.compression, args.level)
    link_bits_per_s = parse_link_rate(args.link, "--link")
    if args.rows is not None and args.rows < 1:
        raise UsageError(f"--rows must be ≥ 1, got {args.rows}")
    signature = _load_signature(args)
    model_name = Path(args.model).stem if args.model else "model"

    wanted_rows = max(batch_sizes) * DEFAULT_MAX_REQUESTS
    if args.data:
        default_rows = args.rows or max(wanted_rows, DEFAULT_DATA_ROWS)
        query_rows = 100
    else:
        query_rows = _synthetic_query_rows(batch_sizes)
        default_rows = args.rows or query_rows * math.ceil(wanted_rows / query_rows)
        if args.data_seed == 0:
            args.data_seed = args.seed
    rows = load_rows(args, signature, default_rows=default_rows, synthetic_query_size=query_rows)
    columns, group_by = rows.columns, rows.group_by
    for note in rows.notes:
        print(f"note: {note}", file=sys.stderr)
    settings = PayloadSettings(
        batch_sizes=tuple(batch_sizes),
        encodings=encodings,
        compressions=compressions,
        level=args.level,
        link_bits_per_s=link_bits_per_s,
        group_by=group_by,
        max_requests=DEFAULT_MAX_REQUESTS,
        model_name=model_name,
        seed=args.seed,
    )
    report = analyse_payload(signature, columns, settings)
    sys.stdout.write(render_report(report))
    sys.stdout.flush()
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
