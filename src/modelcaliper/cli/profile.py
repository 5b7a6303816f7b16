"""``caliper profile``: which ops make a model slow, transform versus model, per batch size."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modelcaliper.cli.dataflags import add_data_arguments
from modelcaliper.errors import UsageError

__all__ = ["register", "run"]

NAME = "profile"
DEFAULT_ROWS = 1000

EXAMPLES = """\
examples:
  # the slowest ops of a SavedModel on rows of its training data, at batch sizes 5 and 25
  caliper profile ranker/1 --data train.parquet --batch-size 5,25

  # an ONNX model, with its nodes named as in the file (graph optimizations off)
  caliper profile model.onnx --data eval.parquet --sample 500 --graph original

  # put your own preprocessing scopes in the transform group; JSON to stdout
  caliper profile ranker/1 --data train.parquet --group transform=prep,features --json -

Each batch size gets its own TensorBoard log directory (TF) or ONNX Runtime profile, a
Chrome trace (trace.json, for Perfetto or chrome://tracing) and profile.json, under --out.
"""


def register(subparsers: Any) -> None:
    """Add the ``profile`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        NAME,
        help="op-level profile of a model: slowest ops, transform vs model",
        description=(
            "Run the model in this process on real rows, after a warm-up, and profile N\n"
            "predictions per batch size with the runtime's own profiler (TensorFlow's\n"
            "tf.profiler or ONNX Runtime's session profiling). Prints the slowest ops, the\n"
            "time spent in the model's feature transform versus the model proper, and how\n"
            "each leading op scales with the batch size."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL",
                        help="an .onnx file, a SavedModel directory or a model base path")
    add_data_arguments(parser, group_by=False)
    runs = parser.add_argument_group("what to profile")
    runs.add_argument("--batch-size", default="5,25", metavar="N,N",
                      help="batch sizes, one profile each (default 5,25)")
    runs.add_argument("--predictions", type=int, default=20, metavar="N",
                      help="profiled predictions per batch size (default 20)")
    runs.add_argument("--warmup", type=int, default=100, metavar="N",
                      help="predictions before profiling, per batch size (default 100)")
    runs.add_argument("--graph", default="optimized", choices=("optimized", "original"),
                      help="ONNX: the graph ONNX Runtime runs, or the nodes as written")
    runs.add_argument("--signature-name", metavar="NAME",
                      help="SavedModel signature to profile (default serving_default)")
    runs.add_argument("--no-split", action="store_true",
                      help="TF: run serving_default even when transform/model signatures exist")
    out = parser.add_argument_group("output")
    out.add_argument("--group", action="append", default=[], metavar="NAME=PREFIX,...",
                     help="ops whose name starts with a PREFIX go to group NAME (repeatable)")
    out.add_argument("--top", type=int, default=10, metavar="N", help="ops listed (default 10)")
    out.add_argument("--out", metavar="DIR",
                     help="where the profiles go (default runs/profiles/<id>)")
    out.add_argument("--json", metavar="FILE",
                     help="also write the profiles as JSON ('-' for stdout, tables to stderr)")
    parser.set_defaults(run=run)


def _inputs(args: argparse.Namespace, signature: Any) -> tuple[dict[str, Any], str]:
    from modelcaliper.cli.dataflags import load_rows

    rows = load_rows(args, signature, default_rows=DEFAULT_ROWS)
    names = [spec.name for spec in signature.inputs]
    source = (f"{rows.num_rows} synthetic rows (pass --data for real ones)"
              if rows.source == "synthetic" else f"{rows.num_rows} rows of {rows.source}")
    return {name: rows.columns[name] for name in names}, source


def run(args: argparse.Namespace) -> int:
    """Run ``caliper profile`` with parsed ``args``; returns the exit code."""
    from modelcaliper.profile.grouping import Grouper, parse_group_flags
    from modelcaliper.profile.isolated import IsolatedSettings, profile_isolated, runtime_kind
    from modelcaliper.profile.render import profiles_document, render_profiles
    from modelcaliper.units import parse_int_list

    settings = IsolatedSettings(
        batch_sizes=tuple(parse_int_list(args.batch_size, "--batch-size", minimum=1)),
        predictions=args.predictions, warmup=args.warmup, graph=args.graph,
        signature_name=args.signature_name, split_timing=not args.no_split, top_n=args.top,
    )
    if args.top < 1:
        raise UsageError(f"--top must be ≥ 1, got {args.top}")
    grouper = Grouper(parse_group_flags(args.group))
    runtime_kind(args.model)  # a missing runtime fails here, naming its extra
    from modelcaliper.server.app import default_model_name
    from modelcaliper.server.runtimes import read_signature

    signature = read_signature(args.model, args.signature_name)
    inputs, source = _inputs(args, signature)
    out_dir = Path(args.out) if args.out else _default_out(args.model)
    to_stdout = args.json == "-"
    tables = sys.stderr if to_stdout else sys.stdout
    print(f"profiling {default_model_name(args.model)} on {source} → {out_dir}", file=sys.stderr)
    results = profile_isolated(args.model, inputs, out_dir, settings, grouper,
                               progress=lambda text: print(text, file=sys.stderr))
    tables.write(render_profiles(results, args.top))
    tables.flush()
    if args.json:
        import orjson

        document = orjson.dumps(profiles_document(results, model=str(args.model),
                                                  top_n=args.top), option=orjson.OPT_INDENT_2)
        if to_stdout:
            sys.stdout.buffer.write(document + b"\n")
            sys.stdout.flush()
        else:
            Path(args.json).write_bytes(document + b"\n")
    return 0


def _default_out(model: str) -> Path:
    from modelcaliper.server.app import default_model_name
    from modelcaliper.store.runfolder import new_run_id

    return Path("runs") / "profiles" / new_run_id(default_model_name(model))
