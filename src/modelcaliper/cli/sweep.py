"""``caliper sweep``: many configurations of one model, each a stored run, and a recommendation.

Axes are comma lists (``--batch-size 5,10,25,50 --protocol v2-grpc,v2-rest --compression
none,gzip --rps 20,40`` or ``--rps auto``), plus the embedded server's batching and thread
settings. Every other option is ``caliper run``'s and applies to every point. Everything is
validated before any server starts (one line, exit 2). Exit 0 when a configuration meets
the SLO (or, without one, completed without errors); 1 when none does; 2 for usage or input
errors; 130 when interrupted. Docs: docs/sweep.md.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from modelcaliper.errors import UsageError

__all__ = ["build_settings", "register", "run"]

NAME = "sweep"
DEFAULT_WARMUP = "1s"

EXAMPLES = """\
examples:
  # batch sizes × protocols at two rates, gated by an SLO; the best configuration and why
  caliper sweep model.onnx --batch-size 5,10,25,50 --protocol v2-grpc,v2-rest \\
      --rps 20,40 --slo 'p99<250ms' --slo 'error_rate<0.1%'

  # the highest sustainable rate of each encoding and compression (capacity search)
  caliper sweep models/ranker --protocol v2-rest --encoding json,binary \\
      --compression none,gzip --candidates 1000 --batch-size 25 --deadline 250ms \\
      --rps auto --slo 'query_p99<250ms'

  # server batching parameters and thread counts (one server start per setting)
  caliper sweep model.onnx --max-batch-size 16,64 --batch-timeout-micros 0,2000 \\
      --batch-size 4 --rps 200 --slo 'p99<20ms'

  # the same through a 100 Mbit/s link (needs root: a network namespace with tc tbf)
  caliper sweep model.onnx --encoding json,binary --protocol v2-rest --link 100mbit ...

Each point runs with its own warm-up and stops early once its p99 (or the SLO's percentile)
is known within --precision, or once its SLO verdict is beyond doubt. Every point is a
stored run tagged with the sweep id; runs/sweeps/<sweep_id>/sweep.json has the figures,
the curves and the recommendation.
"""

# Options of ``caliper run`` a sweep does not take (per-point files, a launched server, gates).
_REFUSED = {"hlog": "--hlog", "junit": "--junit", "records": "--records",
            "launch": "--launch", "ready_url": "--ready-url", "assertions": "--assert",
            "config": "--config", "print_config": "--print-config"}
_AXIS_HELP = {
    "protocol": "protocols to sweep, e.g. v2-grpc,v2-rest (embedded default: v2-grpc)",
    "encoding": "REST encodings to sweep: rows,columnar (tfserving-rest), json,binary (v2-rest)",
    "compression": "compressions to sweep, e.g. none,gzip (zstd: REST only)",
    "batch_size": "rows per model request to sweep, e.g. 5,10,25,50",
    "rps": "rates to sweep, e.g. 20,40,80 (queries/s with --candidates), or auto: find the "
           "highest rate within --slo",
    "duration": "longest measured time per point (default 30s); early stopping usually ends "
                "a point sooner",
    "json": "also write sweep.json to FILE ('-': print it instead of the table)",
}


def register(subparsers: Any) -> None:
    """Add the ``sweep`` subcommand to ``subparsers``."""
    from modelcaliper.cli.run import add_run_arguments

    parser = subparsers.add_parser(
        NAME,
        help="sweep batch sizes, protocols, encodings, rates and server settings; recommend one",
        description=(
            "Run one model under every combination of the given axes — each point a stored\n"
            "run with its own warm-up, stopped early once its tail latency is known — find\n"
            "each configuration's highest rate within the SLO, measure the client's CPU per\n"
            "candidate, and recommend the configuration to use, with the reason."),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    for action in parser._actions:
        if action.dest in _AXIS_HELP:
            action.help = _AXIS_HELP[action.dest]
        if action.dest == "protocol":
            action.choices, action.metavar = None, "LIST"
        if action.dest in ("encoding", "compression", "batch_size", "rps"):
            action.metavar = "LIST"
        if action.dest == "warmup":
            action.default = DEFAULT_WARMUP
            action.help = f"sent first but not measured, before every point (default " \
                          f"{DEFAULT_WARMUP})"
        if action.dest in _REFUSED or action.dest in ("config_format", "no_store"):
            action.help = argparse.SUPPRESS
    server = parser.add_argument_group("server axes (embedded server; each setting is one "
                                       "server start)")
    server.add_argument("--max-batch-size", metavar="LIST",
                        help="server batching: rows per batch, e.g. 16,64 (turns batching on)")
    server.add_argument("--batch-timeout-micros", metavar="LIST",
                        help="server batching: longest wait for a batch to fill, e.g. 0,2000")
    server.add_argument("--num-batch-threads", metavar="LIST",
                        help="server batching: batches run at once, e.g. 1,2")
    server.add_argument("--model-threads", metavar="LIST",
                        help="predictions run at once without batching, e.g. 1,2")
    server.add_argument("--intra-op-threads", metavar="LIST",
                        help="threads inside one operation, e.g. 1,2")
    server.add_argument("--inter-op-threads", metavar="LIST",
                        help="operations run in parallel, e.g. 1,2")
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--slo", action="append", metavar="EXPR",
                       help="what sustainable means, e.g. 'p99<250ms', 'error_rate<0.1%%', "
                            "'query_p99<200ms' (repeatable)")
    sweep.add_argument("--required-rps", metavar="RATE",
                       help="recommend the configuration that sustains this rate with the "
                            "least CPU per candidate")
    sweep.add_argument("--precision", default="10%", metavar="FRACTION",
                       help="stop a point once its percentile is known within ± this "
                            "(95%% confidence; default 10%%)")
    sweep.add_argument("--min-requests", default="400", metavar="N",
                       help="measured requests (queries) before a point may stop early "
                            "(default 400)")
    sweep.add_argument("--min-duration", default="2s", metavar="DUR",
                       help="measured time before a point may stop early (default 2s)")
    sweep.add_argument("--no-early-stop", action="store_true",
                       help="run every point for its whole --duration")
    sweep.add_argument("--start-rps", default="10", metavar="RATE",
                       help="--rps auto: the first rate tried (default 10)")
    sweep.add_argument("--max-rps", default="0", metavar="RATE",
                       help="--rps auto: the highest rate tried (default 0: no limit)")
    sweep.add_argument("--capacity-tolerance", default="5%", metavar="FRACTION",
                       help="--rps auto: stop bisecting once the bracket is this narrow "
                            "(default 5%%)")
    sweep.add_argument("--max-steps", default="12", metavar="N",
                       help="--rps auto: runs per configuration at most (default 12)")
    sweep.add_argument("--order-seed", default="0", metavar="N",
                       help="seed of the order the points run in (default 0)")
    sweep.add_argument("--max-points", default="64", metavar="N",
                       help="refuse sweeps with more points (default 64)")
    sweep.add_argument("--link", metavar="RATE",
                       help="run the embedded server behind a link of this rate each way, "
                            "e.g. 100mbit (needs root)")
    sweep.add_argument("--html", metavar="FILE",
                       help="also write the sweep's self-contained HTML report to FILE "
                            "(needs the ui extra)")
    sweep.add_argument("--sweeps-dir", metavar="DIR",
                       help="where sweep folders go (default <runs-dir>/sweeps)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="print the points in the order they would run, and exit")
    parser.set_defaults(run=run)


def _fraction(text: Any, flag: str) -> float:
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"{flag} must be a fraction like 0.1 or a percentage like 10%, "
                         f"got {raw!r}") from None
    return value


def _number(text: Any, flag: str, *, minimum: float = 0.0, whole: bool = False) -> float:
    try:
        value = int(str(text)) if whole else float(str(text))
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise UsageError(f"{flag} must be {kind}, got {str(text)!r}") from None
    if not value >= minimum or value == float("inf"):
        raise UsageError(f"{flag} must be ≥ {minimum:g}, got {str(text)!r}")
    return value


def _slo(texts: list[str] | None) -> tuple[Any, ...]:
    from modelcaliper.assertions import parse_assertions

    slo = parse_assertions(texts)
    for assertion in slo:
        if assertion.metric.kind == "rate":
            raise UsageError(f"--slo {assertion.expression!r}: the sweep measures throughput "
                             "itself; bound a latency or an error rate (p99<250ms, "
                             "error_rate<0.1%)")
        if assertion.op not in ("<", "<="):
            raise UsageError(f"--slo {assertion.expression!r}: an SLO is an upper bound; "
                             "write it with < or <=")
    return slo


def build_settings(args: argparse.Namespace) -> Any:
    """Validate the parsed options into ``SweepSettings`` (a one-line UsageError otherwise)."""
    from modelcaliper.cli.run import build_run_parser
    from modelcaliper.config import option_table
    from modelcaliper.sweep.axes import SERVER_AXES, check_fixed_server_args, parse_axes
    from modelcaliper.sweep.capacity import SearchSettings
    from modelcaliper.sweep.early_stop import StopRule
    from modelcaliper.sweep.plan import build_plan
    from modelcaliper.sweep.runner import SweepSettings, validate_points
    from modelcaliper.units import parse_duration

    for dest, flag in _REFUSED.items():
        if getattr(args, dest, None):
            hint = "; use --slo" if dest == "assertions" else (
                "; start your server and use --target" if dest in ("launch", "ready_url")
                else "")
            raise UsageError(f"{flag} does not apply to caliper sweep{hint}")
    if args.target is None and args.model_path is None:
        raise UsageError("nothing to sweep: give a model path (caliper serves it) or --target "
                         "URL --protocol P --model NAME (a running server)")
    if args.target is not None and args.model_path is not None:
        raise UsageError("give a model path (caliper starts the server) or --target (yours), "
                         "not both")
    embedded = args.target is None
    if not embedded and (args.model is None or args.protocol is None):
        raise UsageError("--target needs --protocol and --model NAME")
    if not embedded and (args.server_args or args.server_cpus or args.client_cpus):
        raise UsageError("--server-args, --server-cpus and --client-cpus apply to the embedded "
                         "server (a model path)")
    server_values = {name: getattr(args, name) for name in SERVER_AXES}
    axes = parse_axes(protocol=args.protocol, encoding=args.encoding,
                      compression=args.compression, batch_size=args.batch_size, rps=args.rps,
                      server=server_values, embedded=embedded)
    if not embedded and len({p.endswith("-grpc") for p in axes.protocols}) > 1:
        raise UsageError(f"--target {args.target} is one address: sweep either REST or gRPC "
                         f"protocols against it, not both ({','.join(axes.protocols)})")
    slo = _slo(args.slo)
    if axes.auto and not slo:
        raise UsageError("--rps auto needs --slo (what 'sustainable' means), e.g. "
                         "--slo 'p99<250ms'")
    rule = StopRule(precision=_fraction(args.precision, "--precision"),
                    min_units=int(_number(args.min_requests, "--min-requests", minimum=1,
                                          whole=True)),
                    min_duration_s=parse_duration(args.min_duration, "--min-duration"),
                    enabled=not args.no_early_stop)
    search = SearchSettings(
        start_rps=_number(args.start_rps, "--start-rps"),
        tolerance=_fraction(args.capacity_tolerance, "--capacity-tolerance"),
        max_steps=int(_number(args.max_steps, "--max-steps", minimum=2, whole=True)),
        max_rps=_number(args.max_rps, "--max-rps"))
    required = None
    if args.required_rps is not None:
        required = _number(args.required_rps, "--required-rps")
        if required <= 0:
            raise UsageError(f"--required-rps must be > 0, got {args.required_rps!r}")
    candidates = int(_number(args.candidates, "--candidates", whole=True))
    plan = build_plan(axes, seed=int(_number(args.order_seed, "--order-seed", whole=True)),
                      candidates=candidates,
                      max_points=int(_number(args.max_points, "--max-points", minimum=1,
                                             whole=True)))
    link = None
    if args.link is not None:
        from modelcaliper.sweep.link import check_link_support
        from modelcaliper.units import parse_link_rate

        if not embedded:
            raise UsageError("--link puts the embedded server behind a rate-limited link; "
                             "with --target the network is yours")
        link = parse_link_rate(args.link, "--link")
        check_link_support()
    server_args = tuple(shlex.split(args.server_args or ""))
    check_fixed_server_args(server_args, list(axes.server))
    cpus = None
    model_version = args.model_version
    if embedded:
        from modelcaliper.server.runtimes import resolve_artifact
        from modelcaliper.targets.affinity import plan_cpus

        _, _, label = resolve_artifact(args.model_path, args.model_version)
        model_version = model_version or label
        cpus = plan_cpus(args.server_cpus, args.client_cpus, pin=not args.no_pin)
    run_parser = build_run_parser()
    run_args = argparse.Namespace(**{dest: getattr(args, dest)
                                     for dest in vars(run_parser.parse_args([]))})
    runs_dir = Path(args.runs_dir)
    if args.no_store:
        raise UsageError("--no-store does not apply to caliper sweep: every point is a stored "
                         "run (use --runs-dir to put them elsewhere)")
    tags = tuple(dict.fromkeys(str(t).strip() for t in (args.tag or ())))
    settings = SweepSettings(
        plan=plan, axes=axes, run_args=run_args, table=option_table(run_parser), slo=slo,
        rule=rule, search=search, model_path=Path(args.model_path) if embedded else None,
        model_name=args.model, model_version=None if model_version is None
        else str(model_version), target_url=args.target, server_args=server_args, cpus=cpus,
        ready_timeout_s=parse_duration(args.ready_timeout, "--ready-timeout"),
        required_rps=required, link_bits_per_s=link,
        sweep_root=Path(args.sweeps_dir) if args.sweeps_dir else runs_dir / "sweeps",
        tags=tags)
    validate_points(settings)
    return settings


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run ``caliper sweep`` with parsed ``args``; returns the exit code."""
    import orjson

    from modelcaliper.sweep.render import render_sweep
    from modelcaliper.sweep.runner import run_sweep

    settings = build_settings(args)
    if args.html:
        _check_html(Path(args.html))
    if args.dry_run:
        for row in settings.plan.describe():
            print(f"{row['index'] + 1:>3}  {row['label']}")
        for note in (*settings.axes.notes, *settings.plan.skipped):
            print(f"note: {note}")
        return 0
    observer = _terminal(settings, quiet=bool(args.quiet))
    # SIGTERM ends the sweep like Ctrl-C, so servers and the link namespace are cleaned up.
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        outcome = run_sweep(settings, observer)
    finally:
        signal.signal(signal.SIGTERM, previous)
    document = outcome.document
    if args.json == "-":
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(render_sweep(document))
        sys.stdout.write(f"results: {outcome.folder / 'sweep.json'}\n")
        if args.json:
            from modelcaliper.sweep.document import write_document

            write_document(Path(args.json), document)
    if args.html:
        _write_html(Path(args.html), document)
        (sys.stderr if args.json == "-" else sys.stdout).write(f"report: {args.html}\n")
    sys.stdout.flush()
    return outcome.exit_code


def _check_html(path: Path) -> None:
    """Before the sweep starts: the report can be rendered and written where asked."""
    import importlib.util

    from modelcaliper.errors import MissingExtraError

    if importlib.util.find_spec("jinja2") is None:
        raise MissingExtraError("jinja2", "ui", "caliper sweep --html")
    if not path.parent.is_dir():
        raise UsageError(f"--html {path}: the folder {path.parent} does not exist")


def _write_html(path: Path, document: dict[str, Any]) -> None:
    """The sweep's self-contained HTML report (run ids as text), written atomically."""
    from modelcaliper.report.html import render_sweep_page
    from modelcaliper.report.sweep import sweep_view
    from modelcaliper.store._files import atomic_write

    atomic_write(path, render_sweep_page(sweep_view(document), inline_assets=True,
                                         links=False).encode("utf-8"))


def _terminal(settings: Any, *, quiet: bool) -> Any:
    """The observer that prints the sweep's progress on stderr."""
    from modelcaliper.sweep.render import point_line
    from modelcaliper.sweep.runner import SweepObserver

    total = None if settings.axes.auto else len(settings.plan.points)

    class Terminal(SweepObserver):
        """Servers, one line per finished run, notes; the live line on a terminal."""

        position = 0

        def sweep_started(self, sweep_id: str, settings: Any, folder: Path) -> None:
            points = "capacity searches" if settings.axes.auto else "points"
            _say(f"sweep {sweep_id}: {len(settings.plan.points)} {points} -> {folder}")

        def server_started(self, config: Any, endpoint: Any, restart: bool) -> None:
            label = f" ({config.label})" if config.label else ""
            _say(f"server{label} {'restarted' if restart else 'started'}: pid "
                 f"{endpoint.pid} at {endpoint.http_url}")

        def point_finished(self, result: Any) -> None:
            self.position += 1
            _say(point_line(result, self.position, total, settings.fanout))

        def note(self, text: str) -> None:
            _say(f"note: {text}")

        def live(self) -> Any:
            if not sys.stderr.isatty():
                return None
            from modelcaliper.cli.progress import ProgressLine

            return ProgressLine()

    return SweepObserver() if quiet else Terminal()
