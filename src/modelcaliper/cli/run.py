"""``caliper run``: open-loop load against a model, with an honest latency summary and gates.

Three kinds of target: a model path starts the embedded server (``caliper serve-model``) for
the run; ``--target URL --protocol P --model NAME`` is a server already running;
``--launch "COMMAND" --ready-url URL`` starts the user's own server and waits for it. All
flags can come from a config file (``-c caliper.toml``); flags typed win. Everything is
validated before any load (one line, exit 2); the run itself is ``runner.execute``. Exit 0;
1 when an assertion failed, the run was interrupted or failed (every request failed, the
target died); 2 for usage or input errors. Docs: docs/run.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from modelcaliper.cli.dataflags import add_data_arguments
from modelcaliper.config import PROTOCOLS, resolve_encoding
from modelcaliper.targets import Endpoint, ExistingServer, Target

__all__ = ["Endpoint", "ExistingServer", "PROTOCOLS", "Target", "add_run_arguments",
           "build_run_parser", "profile_lines", "register", "render_run", "resolve_encoding",
           "run"]

NAME = "run"
DEFAULT_WARMUP = "2s"

EXAMPLES = """\
examples:
  # your model, served by caliper for the run: 50 req/s for 30 s after a 2 s warm-up
  caliper run model.onnx

  # ranking queries: 20 queries/s of 1000 candidates in requests of 25, 250 ms deadline,
  # gated for CI
  caliper run models/ranker --data rows.parquet --rps 20 --candidates 1000 \\
      --batch-size 25 --deadline 250ms --assert 'query_p99<200ms' \\
      --assert 'deadline_miss_rate<1%' --junit gates.xml --tag nightly

  # a server already running (TF Serving gRPC)
  caliper run --target 127.0.0.1:8500 --protocol tfserving-grpc --model ranker --rps 100

  # your own server command, started and stopped for the run
  caliper run --launch "tensorflow_model_server --rest_api_port=8501 --model_name=ranker \\
      --model_base_path=/models/ranker" --ready-url http://127.0.0.1:8501/v1/models/ranker \\
      --protocol tfserving-rest --model ranker

  # the same from a config file, one flag overridden; --print-config shows the merge
  caliper run -c caliper.toml --rps 80 --print-config

Latency is measured from each request's intended send time, so a slow target can never hide
behind a slow generator. Results: runs/<run_id>/ and runs/caliper.db (see docs/run.md).
"""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of ``caliper run`` (the config file and the Python API take the same)."""
    from modelcaliper.load.flags import add_load_flags

    parser.add_argument("model_path", nargs="?", metavar="MODEL",
                        help="model to serve for the run (.onnx, SavedModel, model base path);"
                             " with --target or --launch, where its signature comes from")
    target = parser.add_argument_group("target")
    target.add_argument("--target", metavar="URL",
                        help="a running server: http://host:port (REST) or host:port (gRPC)")
    target.add_argument("--protocol", choices=PROTOCOLS,
                        help="the server's API (embedded default: v2-grpc)")
    target.add_argument("--model", metavar="NAME",
                        help="model name to call (embedded default: the artifact's name)")
    target.add_argument("--model-version", metavar="V",
                        help="version to serve from a base path; recorded with the run")
    target.add_argument("--launch", metavar='"COMMAND"',
                        help="start this server command for the run (with --ready-url)")
    target.add_argument("--ready-url", metavar="URL",
                        help="--launch: http(s)://... answering 200, or grpc://host:port")
    target.add_argument("--ready-timeout", default="120s", metavar="DUR",
                        help="how long a started server may take to be ready (default 120s)")
    target.add_argument("--server-args", metavar='"ARGS"',
                        help='embedded: extra serve-model flags, e.g. "--enable-batching"')
    target.add_argument("--server-cpus", metavar="LIST",
                        help="CPUs of a started server, e.g. 2-3 (default: the last half)")
    target.add_argument("--client-cpus", metavar="LIST",
                        help="CPUs of the load generator (default: the rest)")
    target.add_argument("--no-pin", action="store_true",
                        help="do not pin the server and the generator to different CPUs")
    target.add_argument("--metrics-url", metavar="URL",
                        help="the target's Prometheus metrics (default: auto-detected)")
    target.add_argument("--no-metrics", action="store_true",
                        help="do not scrape the target's metrics")
    target.add_argument("--encoding", metavar="NAME",
                        help="tfserving-rest: rows (default) or columnar; "
                             "v2-rest: json (default) or binary")
    target.add_argument("--compression", default="none", metavar="NAME",
                        help="request compression: none, gzip, deflate (zstd for REST)")
    target.add_argument("--level", type=int, metavar="N", help="compression level")
    data = parser.add_argument_group("data")
    data.add_argument("--signature", metavar="FILE",
                      help="signature JSON file (default: the model's or the server's)")
    data.add_argument("--data", metavar="FILE",
                      help="Parquet/CSV/JSON-lines/TFRecord file, directory or glob")
    data.add_argument("--synthetic", action="store_true", help="synthetic rows (the default)")
    data.add_argument("--group-by", metavar="COL",
                      help="column whose groups never share a request (without --candidates)")
    data.add_argument("--rows", metavar="N", help="rows of data to read or generate")
    data.add_argument("--pool-mb", default="64", metavar="MB",
                      help="cap on the encoded requests kept for the run (default 64)")
    add_data_arguments(parser, source=False, group_by=False, seed=False)
    add_load_flags(parser)
    for action in parser._actions:
        if action.dest == "warmup":
            action.default = DEFAULT_WARMUP
            action.help = f"sent first but not measured (default {DEFAULT_WARMUP})"
        if action.dest == "rps":
            action.help = "mean requests per second (queries per second with --candidates; " \
                          "default 50)"
        if action.dest == "json":
            action.help = "write the summary as JSON to FILE ('-': print it instead of the " \
                          "terminal summary)"
    answers = parser.add_argument_group("model errors (answers that are wrong, not failed)")
    answers.add_argument("--check-outputs", action="store_true",
                         help="decode every answer; NaN/inf values and missing or misshapen "
                              "outputs count as model errors")
    answers.add_argument("--expect-model", action="store_true",
                         help="also compare every answer with the model run in-process on the "
                              "same rows (implies --check-outputs)")
    answers.add_argument("--rtol", default="1e-5", metavar="R",
                         help="relative tolerance of --expect-model (default 1e-5)")
    answers.add_argument("--atol", default="1e-6", metavar="A",
                         help="absolute tolerance of --expect-model (default 1e-6)")
    profiling = parser.add_argument_group("op profile (see docs/profiling.md)")
    profiling.add_argument("--profile", action="store_true",
                           help="capture the model's op profile during the steady phase "
                                "(embedded server, or --profiler-address for TensorFlow)")
    profiling.add_argument("--profiler-address", metavar="HOST:PORT",
                           help="a TensorFlow profiler service to capture from (TF Serving's "
                                "gRPC port, or serve-model --profiler-port)")
    profiling.add_argument("--profile-group", action="append", metavar="GROUP=PREFIX,...",
                           help="put ops under these name prefixes in GROUP (repeatable), "
                                "e.g. transform=features/,preprocess/")
    results = parser.add_argument_group("results")
    results.add_argument("--runs-dir", default="runs", metavar="DIR",
                         help="where run folders go (default runs)")
    results.add_argument("--db", metavar="FILE",
                         help="the run database (default <runs-dir>/caliper.db)")
    results.add_argument("--tag", action="append", metavar="TAG",
                         help="tag the stored run (repeatable)")
    results.add_argument("--no-store", action="store_true",
                         help="keep no run folder and no database row")
    gates = parser.add_argument_group("gates (exit 1 when one fails; see docs/run.md)")
    gates.add_argument("--assert", action="append", dest="assertions", metavar="EXPR",
                       help="e.g. 'p99<120ms', 'error_rate<0.1%%', 'throughput>=200rps' "
                            "(repeatable)")
    gates.add_argument("--junit", metavar="FILE", help="write the verdicts as JUnit XML")
    terminal = parser.add_argument_group("terminal and config")
    terminal.add_argument("--quiet", action="store_true",
                          help="no live progress and no notes; the summary only")
    terminal.add_argument("-c", "--config", metavar="FILE",
                          help="options from a .toml, .json or .yaml file (flags win)")
    terminal.add_argument("--print-config", action="store_true",
                          help="print the merged, validated options and exit")
    terminal.add_argument("--config-format", default="toml", choices=("toml", "json", "yaml"),
                          help="format of --print-config (default toml)")


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand to ``subparsers``."""
    from modelcaliper.config import mark_defaults

    parser = subparsers.add_parser(
        NAME,
        help="load-test a model: serve it (or use a running server), measure, store, gate",
        description=(
            "Send model requests at the times an arrival process intends, whatever the\n"
            "target does, and report latency (from the intended time), where it went,\n"
            "errors, fanned-out queries and their deadline misses, the server's own\n"
            "metrics and the verdict of every --assert. Every run is stored."),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    mark_defaults(parser)
    parser.set_defaults(run=run)


def build_run_parser() -> argparse.ArgumentParser:
    """A stand-alone parser of ``caliper run``'s options (the Python API's defaults)."""
    parser = argparse.ArgumentParser(prog="caliper run", add_help=False)
    add_run_arguments(parser)
    return parser


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``caliper run`` with parsed ``args``; returns the exit code."""
    from modelcaliper.cli.progress import ProgressLine
    from modelcaliper.config import (
        apply_options,
        build_spec,
        load_config_file,
        option_table,
        render,
        take_explicit,
    )
    from modelcaliper.runner import execute

    explicit = take_explicit(args)
    table = option_table(build_run_parser())
    if args.config:
        apply_options(args, load_config_file(args.config), table, source=args.config,
                      keep=explicit)
    spec = build_spec(args, table)
    if args.print_config:
        sys.stdout.write(render(spec.options, args.config_format))
        return 0
    quiet = spec.quiet or spec.json_path == "-"
    outcome = execute(spec, say=None if spec.quiet else _say,
                      progress=None if spec.quiet else ProgressLine(),
                      report=lambda o: _report(o, json_only=spec.json_path == "-",
                                               quiet=quiet))
    return outcome.exit_code


def _report(outcome: Any, *, json_only: bool, quiet: bool) -> None:
    import orjson

    summary = outcome.summary
    if json_only:
        sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
        return
    sys.stdout.write(render_run(summary))
    sys.stdout.flush()
    if outcome.reason and not quiet:
        _say(f"{outcome.status}: {outcome.reason}")


_SERVER_KINDS = (("request_latency_ms", "request"), ("queue_latency_ms", "queue"),
                 ("runtime_latency_ms", "runtime"), ("phases_ms", "phase"),
                 ("batch_size_rows", "batch rows"))
_MAX_SERVER_ROWS = 12


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _server_lines(summary: dict[str, Any]) -> list[str]:
    """The server's own histograms next to the client's latency, one row per series."""
    server = summary.get("server_metrics") or {}
    if not server.get("available"):
        reason = server.get("reason")
        return [f"server view not available: {reason}"] if reason else []
    lines = [f"server view  {server['url']}, Δ over {server['window_s']:.1f}s (warm-up "
             "included)",
             f"  {'series':<26}{'count':>8}{'mean':>9}{'p50':>9}{'p90':>9}{'p99':>9}"]
    lat = summary["latency_ms"]
    lines.append(f"  {'client latency ms':<26}{lat['count']:>8}{_num(lat['mean']):>9}"
                 f"{_num(lat['p50']):>9}{_num(lat['p90']):>9}{_num(lat['p99']):>9}")
    rows = []
    for kind, label in _SERVER_KINDS:
        for entry in server["histograms"].get(kind, []):
            if entry.get("mean") == 0 and kind == "phases_ms":
                continue  # a phase that took no time (recv over gRPC, batch without batching)
            labels = entry.get("labels") or {}
            detail = labels.get("phase") or labels.get("model") or labels.get("model_name")
            name = f"server {label}" + (f" {detail}" if detail and kind == "phases_ms" else "")
            unit = "" if kind == "batch_size_rows" else " ms"
            rows.append(f"  {name + unit:<26}{entry['count']:>8}{_num(entry['mean']):>9}"
                        f"{_num(entry['p50']):>9}{_num(entry['p90']):>9}"
                        f"{_num(entry['p99']):>9}")
    if len(rows) > _MAX_SERVER_ROWS:
        rows = rows[:_MAX_SERVER_ROWS] + [f"  ... {len(rows) - _MAX_SERVER_ROWS} more in "
                                          "server_metrics.json"]
    return lines + (rows or ["  (no server histogram moved during the run)"])


def profile_lines(summary: Mapping[str, Any]) -> list[str]:
    """The op profile captured under load: top groups and ops, or why it is missing."""
    profile = summary.get("profile")
    if not profile:
        return []
    if profile.get("status") != "ok":
        return [f"op profile  missing: {profile.get('reason', 'unknown reason')}"]
    lines = [f"op profile  {profile.get('window', '')}".rstrip()]
    groups = profile.get("groups") or []
    if groups:
        lines.append("  groups    " + "  ".join(
            f"{g['group']} {100 * g['share']:.1f}%" for g in groups))
    for op in (profile.get("top_ops") or [])[:5]:
        lines.append(f"  {100 * op['share']:5.1f}%  {op['name'][:60]:<60}  {op['group']}")
    return lines


def render_run(summary: dict[str, Any]) -> str:
    """The terminal report of a run: the load summary, the server view, verdicts, where."""
    from modelcaliper.load.summary import render_summary

    lines = [render_summary(summary).rstrip("\n")]
    lines += _server_lines(summary)
    verdicts = summary.get("assertions") or []
    if verdicts:
        lines.append("assertions")
        width = max(len(v["expression"]) for v in verdicts)
        for verdict in verdicts:
            mark = "pass" if verdict["passed"] else "FAIL"
            lines.append(f"  {mark}  {verdict['expression']:<{width}}  {verdict['message']}")
    lines += profile_lines(summary)
    phases = summary.get("phases_wall_s") or {}
    if phases:
        lines.append("phases s    " + "  ".join(f"{k} {v:.2f}" for k, v in phases.items()))
    if summary.get("folder"):
        lines.append(f"results     {summary['folder']}")
    return "\n".join(lines) + "\n"
