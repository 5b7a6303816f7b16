"""The load flags of ``caliper run`` (and of any command that sends load) → a ``LoadSpec``.

``add_load_flags`` registers the flags; ``spec_from_args`` reads them back, parses durations
(``250ms``, ``2s``, ``1m``) and numbers with messages naming the flag, and builds the
validated ``LoadSpec``. Flags are taken as text and parsed here, not by argparse, so that
every mistake reads the same way: ``--rps must be a number > 0, got 'fast'``.
"""

from __future__ import annotations

import argparse
from typing import Any

from modelcaliper.errors import UsageError
from modelcaliper.load.schedule import ARRIVALS
from modelcaliper.load.spec import ON_DEADLINE, ON_OVERLOAD, LoadSpec
from modelcaliper.units import parse_duration

__all__ = ["DEFAULT_DURATION_S", "add_load_flags", "parse_steps", "spec_from_args"]

DEFAULT_DURATION_S = 30.0
"""Measured seconds when neither --duration nor --requests is given (constant/poisson/bursty)."""

_ARRIVAL_FLAGS = ("burst_multiplier", "burst_duration", "calm_duration", "steps", "replay",
                  "replay_speed")


def add_load_flags(parser: argparse.ArgumentParser) -> None:
    """Add the arrival, bounds, fan-out, limits, seeds and output flags to ``parser``."""
    arrival = parser.add_argument_group("arrival (open loop: sends never wait for answers)")
    arrival.add_argument("--rps", metavar="RATE",
                         help="mean requests per second (queries per second with --candidates)")
    arrival.add_argument("--arrival", default="constant", metavar="|".join(ARRIVALS),
                         help="arrival process (default constant)")
    arrival.add_argument("--burst-multiplier", metavar="X",
                         help="bursty: rate during bursts / rate when calm (default 5)")
    arrival.add_argument("--burst-duration", metavar="DUR",
                         help="bursty: mean burst length (default 1s)")
    arrival.add_argument("--calm-duration", metavar="DUR",
                         help="bursty: mean calm length (default 9s)")
    arrival.add_argument("--steps", metavar="DUR:RATE,...",
                         help='steps: stages such as "10s:50,10s:100" (rate 0 pauses)')
    arrival.add_argument("--replay", metavar="FILE",
                         help="replay: CSV or JSON-lines file of request timestamps")
    arrival.add_argument("--replay-speed", metavar="X", help="replay: speed-up factor (default 1)")
    bounds = parser.add_argument_group("bounds (whichever comes first ends the run)")
    bounds.add_argument("--duration", metavar="DUR",
                        help=f"measured time after the warm-up (default {DEFAULT_DURATION_S:g}s; "
                             "0 = until --requests or the schedule ends)")
    bounds.add_argument("--warmup", default="0", metavar="DUR",
                        help="sent first but not measured (default 0)")
    bounds.add_argument("--requests", default="0", metavar="N",
                        help="measured requests (queries with --candidates); 0 = no limit")
    shape = parser.add_argument_group("request shape and fan-out")
    shape.add_argument("--batch-size", default="1", metavar="N", help="rows per model request")
    shape.add_argument("--candidates", default="0", metavar="K",
                       help="rows per query, fanned out over ceil(K / batch size) requests")
    shape.add_argument("--per-query-concurrency", default="0", metavar="N",
                       help="requests of one query outstanding at once (0 = all at once)")
    shape.add_argument("--deadline", default="0", metavar="DUR",
                       help="query deadline from its intended time (0 = none)")
    shape.add_argument("--on-deadline", default="wait", metavar="|".join(ON_DEADLINE),
                       help="at the deadline: wait for outstanding requests or cancel them")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--timeout", default="10s", metavar="DUR",
                        help="per-request timeout (default 10s)")
    limits.add_argument("--max-in-flight", default="0", metavar="N",
                        help="outstanding requests per worker (0 = unbounded)")
    limits.add_argument("--on-overload", default="queue", metavar="|".join(ON_OVERLOAD),
                        help="beyond --max-in-flight: queue in the client (counted in latency) "
                             "or drop (counted)")
    limits.add_argument("--connections", default="8", metavar="N",
                        help="connections (HTTP) or channels (gRPC) per worker (default 8)")
    limits.add_argument("--http2", action="store_true",
                        help="REST over HTTP/2 cleartext (h2c, prior knowledge): many streams "
                             "per connection")
    limits.add_argument("--workers", default="1", metavar="N",
                        help="generator processes sharing one schedule (default 1)")
    seeds = parser.add_argument_group("seeds")
    seeds.add_argument("--seed", default="0", metavar="N", help="seed of the arrival schedule")
    seeds.add_argument("--data-seed", default="0", metavar="N",
                       help="seed of the data sample, independent of --seed")
    output = parser.add_argument_group("output")
    output.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    output.add_argument("--records", metavar="DIR",
                        help="write every request (and query) as Parquet files in DIR")
    output.add_argument("--hlog", metavar="FILE",
                        help="write per-second latency histograms as an HdrHistogram log")


def _int(text: Any, flag: str, minimum: int = 0) -> int:
    try:
        value = int(str(text).strip().replace("_", ""))
    except ValueError:
        raise UsageError(f"{flag} must be a whole number, got {str(text)!r}") from None
    if value < minimum:
        raise UsageError(f"{flag} must be ≥ {minimum}, got {value}")
    return value


def _float(text: Any, flag: str) -> float:
    try:
        return float(str(text).strip())
    except ValueError:
        raise UsageError(f"{flag} must be a number, got {str(text)!r}") from None


def parse_steps(text: str) -> str:
    """Stages as ``duration@rate`` text from ``10s:50,10s:100`` (``@`` is accepted too)."""
    stages = []
    for item in (part.strip() for part in str(text).split(",")):
        duration, sep, rate = item.rpartition(":") if "@" not in item else item.partition("@")
        if not sep or not duration.strip() or not rate.strip():
            raise UsageError(f'--steps must look like "10s:50,10s:100" (duration:rate), '
                             f"got {text!r}")
        stages.append(f"{duration.strip()}@{rate.strip()}")
    return ",".join(stages)


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    """The validated ``LoadSpec`` the parsed flags describe."""
    arrival = str(args.arrival).strip().lower()
    params: dict[str, Any] = {}
    for name in _ARRIVAL_FLAGS:
        value = getattr(args, name, None)
        if value is None:
            continue
        if name == "steps":
            value = parse_steps(value)
        elif name in ("burst_multiplier", "replay_speed"):
            value = _float(value, "--" + name.replace("_", "-"))
        params[name] = value
    max_requests = _int(args.requests, "--requests")
    if args.duration is not None:
        duration_s = parse_duration(args.duration, "--duration")
    elif max_requests or arrival in ("steps", "replay"):
        duration_s = 0.0
    else:
        duration_s = DEFAULT_DURATION_S
    rate = None if args.rps is None else _float(args.rps, "--rps")
    return LoadSpec(
        arrival=arrival,
        rate_per_s=rate,
        arrival_params=params,
        duration_s=duration_s,
        warmup_s=parse_duration(args.warmup, "--warmup"),
        max_requests=max_requests,
        batch_size=_int(args.batch_size, "--batch-size", 1),
        candidates=_int(args.candidates, "--candidates"),
        per_query_concurrency=_int(args.per_query_concurrency, "--per-query-concurrency"),
        deadline_s=parse_duration(args.deadline, "--deadline"),
        on_deadline=str(args.on_deadline).strip().lower(),
        timeout_s=parse_duration(args.timeout, "--timeout"),
        max_in_flight=_int(args.max_in_flight, "--max-in-flight"),
        on_overload=str(args.on_overload).strip().lower(),
        connections=_int(args.connections, "--connections", 1),
        http2=bool(getattr(args, "http2", False)),
        workers=_int(args.workers, "--workers", 1),
        seed=_int(args.seed, "--seed"),
        data_seed=_int(args.data_seed, "--data-seed"),
    )
