"""``caliper serve-model``: serve one model over TF Serving and v2 REST and gRPC, with timing."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from modelcaliper.errors import UsageError

__all__ = ["build_config", "register", "run"]

NAME = "serve-model"
_MIB = 1024 * 1024

EXAMPLES = """\
examples:
  # an ONNX model on TF Serving's ports (REST 8501, gRPC 8500)
  caliper serve-model model.onnx

  # a TF Serving model base path (highest version), free ports written to a file
  caliper serve-model models/ranker --http-port 0 --grpc-port 0 --ready-file ready.json

  # server-side batching with TF Serving's parameters file
  caliper serve-model saved_model/ --enable-batching --batching-parameters batching.txt

  # batching parameters as flags instead of a file
  caliper serve-model model.onnx --enable-batching --max-batch-size 64 \\
      --batch-timeout-micros 2000 --allowed-batch-sizes 16,32,64

  # TensorFlow's profiler server next to the model, for TensorBoard's capture tool
  caliper serve-model saved_model/ --profiler-port 6009

The server answers TF Serving REST (/v1/models/NAME:predict, rows or columnar), v2 REST
(/v2/models/NAME/infer, JSON or binary tensors), both gRPC APIs on the gRPC port, and
Prometheus metrics on /metrics. Every response carries Server-Timing with the server's
phases. Logs are JSON lines on stderr; SIGTERM drains requests in flight and exits 0.
"""

_BATCH_FLAGS = ("max_batch_size", "batch_timeout_micros", "num_batch_threads",
                "max_enqueued_batches", "allowed_batch_sizes", "pad_variable_length_inputs")


def register(subparsers: Any) -> None:
    """Add the ``serve-model`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        NAME,
        help="serve a model over TF Serving and v2 REST/gRPC with per-request timing",
        description=(
            "Load a model with its own runtime (ONNX Runtime or TensorFlow) and serve it over\n"
            "TF Serving's and the Open Inference Protocol's REST and gRPC APIs from one\n"
            "process, telling each client where the server's time went (Server-Timing)."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL",
                        help="an .onnx file, a SavedModel directory, or a base path of versions")
    parser.add_argument("--model-name", help="name clients use (default: the artifact's name)")
    parser.add_argument("--version", help="version to serve from a base path (default: highest)")
    parser.add_argument("--signature-name", help="TF signature to serve (default serving_default)")
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    net.add_argument("--http-port", type=int, default=8501, help="REST port, 0 = free (8501)")
    net.add_argument("--grpc-port", type=int, default=8500, help="gRPC port, 0 = free (8500)")
    net.add_argument("--max-body-mb", type=float, default=64.0, metavar="MB",
                     help="largest request body or gRPC message, in MiB (default 64)")
    net.add_argument("--ready-file", type=Path, metavar="FILE",
                     help="write {http_port, grpc_port, pid, model_name} here once ready")
    run_group = parser.add_argument_group("model execution")
    run_group.add_argument("--intra-op-threads", type=int, metavar="N",
                           help="threads inside one operation (default: the runtime's)")
    run_group.add_argument("--inter-op-threads", type=int, metavar="N",
                           help="operations run in parallel (default: the runtime's)")
    run_group.add_argument("--graph-optimization", default="all",
                           choices=("disable", "basic", "extended", "all"),
                           help="ONNX Runtime graph optimization level (default all)")
    run_group.add_argument("--model-threads", type=int, default=1, metavar="N",
                           help="predictions run at once without batching (default 1)")
    run_group.add_argument("--execution", default="auto", choices=("auto", "thread", "loop"),
                           help="where unbatched predictions run: on model threads, on the "
                                "event loop (no thread hand-off), or auto: on the loop while "
                                "predictions take < 1 ms (default auto)")
    run_group.add_argument("--max-queued-requests", type=int, default=64, metavar="N",
                           help="requests waiting for a model thread before 503s (default 64, "
                                "0 = unbounded)")
    run_group.add_argument("--warmup-requests", type=int, default=8, metavar="N",
                           help="synthetic predictions before declaring ready (default 8)")
    run_group.add_argument("--no-split-timing", dest="split_timing", action="store_false",
                           help="run TF models' serving_default alone, timed as one compute "
                                "phase, instead of transform then model (one call less)")
    run_group.add_argument("--profiler-port", type=int, metavar="PORT",
                           help="start TensorFlow's profiler server on this port (TF models)")
    batch = parser.add_argument_group("batching (off unless --enable-batching, as in TF Serving)")
    batch.add_argument("--enable-batching", action="store_true",
                       help="merge concurrent requests into model calls")
    batch.add_argument("--batching-parameters", type=Path, metavar="FILE",
                       help="TF Serving batching_parameters text file")
    batch.add_argument("--max-batch-size", type=int, metavar="N", help="rows per batch (1000)")
    batch.add_argument("--batch-timeout-micros", type=int, metavar="US",
                       help="longest wait for a batch to fill (0)")
    batch.add_argument("--num-batch-threads", type=int, metavar="N",
                       help="batches run at once (1)")
    batch.add_argument("--max-enqueued-batches", type=int, metavar="N",
                       help="closed batches waiting before 503s (10)")
    batch.add_argument("--allowed-batch-sizes", metavar="N,N",
                       help="sizes batches are padded up to; the last one = max batch size")
    batch.add_argument("--pad-variable-length-inputs", action="store_true", default=None,
                       help="pad inputs of differing non-batch sizes within a batch")
    parser.add_argument("--grace-period-s", type=float, default=10.0, metavar="S",
                        help="how long SIGTERM waits for requests in flight (default 10)")
    parser.set_defaults(run=run)


def _batching(args: argparse.Namespace) -> Any:
    from modelcaliper.server.batching import BatchingParameters, parse_batching_parameters

    given = [name for name in _BATCH_FLAGS if getattr(args, name) is not None]
    if not args.enable_batching:
        if given or args.batching_parameters is not None:
            flag = "--" + (given[0] if given else "batching_parameters").replace("_", "-")
            raise UsageError(f"{flag} has no effect without --enable-batching; add it "
                             "(batching is off by default, as in TF Serving)")
        return None
    if args.batching_parameters is not None:
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag} cannot be combined with --batching-parameters; put it in "
                             "the file")
        return parse_batching_parameters(args.batching_parameters)
    values: dict[str, Any] = {name: getattr(args, name) for name in given}
    if "allowed_batch_sizes" in values:
        try:
            values["allowed_batch_sizes"] = tuple(
                int(part) for part in values["allowed_batch_sizes"].split(",") if part.strip())
        except ValueError:
            raise UsageError(f"--allowed-batch-sizes must be whole numbers separated by commas, "
                             f"got '{args.allowed_batch_sizes}'") from None
    return BatchingParameters(**values)


def build_config(args: argparse.Namespace) -> Any:
    """The ``ServerConfig`` the parsed arguments describe (validated)."""
    from modelcaliper.server.app import ServerConfig

    if not args.max_body_mb > 0:
        raise UsageError(f"--max-body-mb must be > 0, got {args.max_body_mb}")
    return ServerConfig(
        model_path=Path(args.model),
        model_name=args.model_name,
        version=args.version,
        signature_name=args.signature_name,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        graph_optimization=args.graph_optimization,
        model_threads=args.model_threads,
        execution=args.execution,
        batching=_batching(args),
        max_queued_requests=args.max_queued_requests,
        max_body_bytes=int(args.max_body_mb * _MIB),
        warmup_requests=args.warmup_requests,
        ready_file=args.ready_file,
        profiler_port=args.profiler_port,
        split_timing=args.split_timing,
        grace_period_s=args.grace_period_s,
    )


def run(args: argparse.Namespace) -> int:
    """Serve the model until SIGTERM/SIGINT; 0 after a clean drain, 2 for bad input."""
    # Native libraries log to stderr as plain text, which would break its one JSON object
    # per line; set these variables yourself to see their logs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from modelcaliper.server.app import serve

    return serve(build_config(args))
