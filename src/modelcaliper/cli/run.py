"""``caliper run``: open-loop load against a model server, with an honest latency summary.

Everything is checked before any load is sent: the load flags (``load.flags``), the encoding
and compression for the protocol, the target (asked for the model's metadata — an unreachable
target is one line naming the address, exit 2), the signature and the data. Then the request
pool is built, the schedule computed, the run driven, and the summary printed (and written
with ``--json``). Exit 0; 1 when every request failed or the target stopped answering;
2 for usage or input errors; 130 when interrupted (the partial results are still written).

A *target* is anything that yields a base URL, a protocol and the model's signature.
``ExistingServer`` is a server already running; an embedded model or a launched command are
further ``Target`` kinds with the same two methods.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from modelcaliper.errors import TargetError, UsageError
from modelcaliper.targets import Endpoint, ExistingServer, Target

__all__ = ["Endpoint", "ExistingServer", "Target", "register", "resolve_encoding", "run"]

NAME = "run"
PROTOCOLS = ("tfserving-rest", "tfserving-grpc", "v2-rest", "v2-grpc")
_REST_ENCODINGS = {"tfserving-rest": ("rows", "columnar"), "v2-rest": ("json", "binary")}
_POOL_UNITS = 64  # units of data to encode by default (the pool is also capped by --pool-mb)
_MAX_DEFAULT_ROWS = 200_000

EXAMPLES = """\
examples:
  # 50 requests/s of 25 synthetic rows for 30 s against TF Serving REST
  caliper run --target http://127.0.0.1:8501 --protocol tfserving-rest --model ranker \\
      --synthetic --rps 50 --batch-size 25

  # ranking queries: 20 queries/s of 1000 candidates in requests of 25, 250 ms deadline
  caliper run --target 127.0.0.1:8500 --protocol v2-grpc --model ranker --data rows.parquet \\
      --rps 20 --candidates 1000 --batch-size 25 --deadline 250ms --json run.json

  # bursty traffic with two generator processes, every request kept as Parquet
  caliper run --target http://127.0.0.1:8501 --protocol v2-rest --encoding binary \\
      --model ranker --synthetic --arrival bursty --rps 200 --burst-multiplier 8 \\
      --workers 2 --records runs/bursty/

Latency is measured from each request's intended send time, so a slow target can never hide
behind a slow generator; the generator reports if it could not keep up.
"""


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand to ``subparsers``."""
    from modelcaliper.load.flags import add_load_flags

    parser = subparsers.add_parser(
        NAME,
        help="open-loop load against a model server, latency from intended send times",
        description=(
            "Send model requests at the times an arrival process intends, whatever the\n"
            "target does, and report latency (from the intended time), where it went,\n"
            "errors, fanned-out queries and their deadline misses, and generator health."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_argument_group("target")
    target.add_argument("--target", required=True, metavar="URL",
                        help="a running server: http://host:port (REST) or host:port (gRPC)")
    target.add_argument("--protocol", required=True, choices=PROTOCOLS,
                        help="the server's API")
    target.add_argument("--model", required=True, metavar="NAME", help="model name to call")
    target.add_argument("--encoding", metavar="NAME",
                        help="tfserving-rest: rows (default) or columnar; "
                             "v2-rest: json (default) or binary")
    target.add_argument("--compression", default="none", metavar="NAME",
                        help="request compression: none, gzip, deflate (zstd for REST)")
    target.add_argument("--level", type=int, metavar="N", help="compression level")
    data = parser.add_argument_group("data")
    data.add_argument("--signature", metavar="FILE",
                      help="signature JSON file (default: the server's metadata)")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="FILE",
                        help="Parquet/CSV/JSON-lines file, directory or glob")
    source.add_argument("--synthetic", action="store_true", help="synthetic rows (the default)")
    data.add_argument("--group-by", metavar="COL",
                      help="column whose groups never share a request (without --candidates)")
    data.add_argument("--rows", metavar="N", help="rows of data to read or generate")
    data.add_argument("--pool-mb", default="64", metavar="MB",
                      help="cap on the encoded requests kept for the run (default 64)")
    add_load_flags(parser)
    parser.set_defaults(run=run)


def resolve_encoding(protocol: str, encoding: str | None) -> str:
    """The wire encoding (one of ``ENCODINGS``) for a protocol and an ``--encoding`` choice."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    choices = _REST_ENCODINGS.get(protocol)
    if choices is None:
        if encoding is not None:
            raise UsageError(f"--encoding does not apply to {protocol} (protobuf only)")
        return protocol
    chosen = (encoding or choices[0]).strip().lower()
    if chosen not in choices:
        raise UsageError(f"--encoding for {protocol} must be {' or '.join(choices)}, "
                         f"got {encoding!r}")
    return f"{protocol} {chosen}"


def _positive_float(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{flag} must be > 0, got {text!r}")
    return value


def _columns(args: argparse.Namespace, signature: Any, spec: Any) -> dict[str, Any]:
    from modelcaliper.workload import read_columns, synthetic_columns

    per_unit = spec.candidates or spec.batch_size
    if args.rows is not None:
        try:
            rows = int(args.rows)
        except ValueError:
            raise UsageError(f"--rows must be a whole number, got {args.rows!r}") from None
        if rows < 1:
            raise UsageError(f"--rows must be ≥ 1, got {rows}")
    else:
        rows = max(per_unit, min(per_unit * _POOL_UNITS, _MAX_DEFAULT_ROWS))
    if args.data:
        return read_columns(args.data, limit=rows, sample_seed=spec.data_seed)
    return synthetic_columns(signature, rows, seed=spec.data_seed,
                             query_size=spec.candidates or 100)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``caliper run`` with parsed ``args``; returns the exit code."""
    from modelcaliper.load.flags import spec_from_args
    from modelcaliper.load.pool import build_pool, unit_requests
    from modelcaliper.load.summary import (
        build_summary,
        render_summary,
        write_latency_hlog,
        write_summary,
    )
    from modelcaliper.load.workers import TransportRecipe, run_load
    from modelcaliper.signature import load_signature_file
    from modelcaliper.wire.compression import parse_compression

    spec = spec_from_args(args)
    encoding = resolve_encoding(args.protocol, args.encoding)
    compression = parse_compression(args.compression)
    if args.protocol.endswith("-grpc") and compression == "zstd":
        raise UsageError(f"--compression zstd is HTTP-only; {args.protocol} takes none, gzip "
                         "or deflate")
    pool_mb = _positive_float(args.pool_mb, "--pool-mb")
    signature = load_signature_file(args.signature) if args.signature else None
    target: Target = ExistingServer(args.target, args.protocol, args.model)
    try:
        endpoint = target.open()
    except TargetError as exc:
        # Nothing was sent: an unreachable target is an input error of this command.
        print(f"error: TargetError: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    try:
        signature = signature or endpoint.signature
        columns = _columns(args, signature, spec)
        units = unit_requests(columns, signature, batch_size=spec.batch_size,
                              candidates=spec.candidates, model_name=endpoint.model,
                              group_by=args.group_by)
        pool = build_pool(units, encoding, compression, args.level, pool_mb)
        plan = spec.plan()
        _say(f"pool: {len(pool.units)} units, {pool.request_count} requests of "
             f"{pool.mean_request_bytes:.0f} B mean ({encoding}, {compression}), "
             f"built in {pool.build_s * 1e3:.0f} ms")
        _say(f"sending {len(plan.offsets_s)} {'queries' if spec.fanout else 'requests'} "
             f"to {endpoint.url} over {spec.workers} worker(s); Ctrl-C stops early")
        factory = TransportRecipe(endpoint.protocol, endpoint.url, spec.connections)
        result = run_load(spec, plan, pool, factory, records_dir=args.records)
        summary = build_summary(result, spec, plan, pool=pool, target={
            "url": endpoint.url, "protocol": endpoint.protocol, "model": endpoint.model})
        sys.stdout.write(render_summary(summary))
        sys.stdout.flush()
        if args.json:
            write_summary(summary, args.json)
            _say(f"wrote {args.json}")
        if args.hlog:
            write_latency_hlog(result.stats, result.started_at_s, args.hlog)
            _say(f"wrote {args.hlog}")
    finally:
        target.close()
    if result.interrupted:
        return 130
    return _verdict(summary, endpoint)


def _verdict(summary: dict[str, Any], endpoint: Endpoint) -> int:
    """1 when every request failed or the target no longer answers, else 0."""
    from modelcaliper.load.health import probe_target

    requests = summary["requests"]
    if requests["scheduled"] and not requests["ok"]:
        _say("error: every request failed")
        return 1
    try:
        probe_target(endpoint.url, endpoint.protocol, endpoint.model)
    except TargetError as exc:
        _say(f"error: the target stopped answering during the run: {exc}")
        return 1
    return 0
