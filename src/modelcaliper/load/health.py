"""Health on both ends of a run: is the generator keeping up, and does the target answer?

**The generator.** An open-loop generator is only honest while it sends on time. It watches
its own schedule lag (dispatched − intended) and the rate it achieved against the rate the
schedule asked for. It calls itself *saturated* when the lag's p99 exceeds 1 ms — whatever
the target did: an open-loop generator dispatches on time however slow or failing the target
is, so late dispatches are its own (an overloaded generator's requests may even time out
waiting for a connection, which must not pass for the target's failure) — or when it
dispatched less than 99 % of the offered rate while the target was healthy (at most 1 %
errors and timeouts). Then the advice is to add ``--workers``; when the target failed too,
the message says so, since both stories are then in the results.

**The target.** Before any load is sent, ``probe_target`` asks the server for the model's
metadata over the chosen protocol (TF Serving or v2, REST or gRPC); that proves it is
reachable, that it serves the model, and yields the model's signature. An unreachable target
is a one-line ``TargetError`` naming the address.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from modelcaliper.errors import CaliperError, TargetError, UsageError
from modelcaliper.load.records import RunStats
from modelcaliper.load.transport import Status
from modelcaliper.signature import Signature

__all__ = [
    "BUSY_MACHINE_CPU_PERCENT",
    "HEALTHY_FAILURE_SHARE",
    "LAG_P99_LIMIT_MS",
    "PROTOCOLS",
    "RATE_SHARE_LIMIT",
    "GeneratorHealth",
    "assess_generator",
    "http_base",
    "probe_target",
]

LAG_P99_LIMIT_MS = 1.0
"""Schedule lag p99 above which the generator counts as saturated."""

RATE_SHARE_LIMIT = 0.99
"""Share of the offered rate below which the generator counts as saturated."""

HEALTHY_FAILURE_SHARE = 0.01
"""Largest share of errors and timeouts for which the target counts as healthy."""

BUSY_MACHINE_CPU_PERCENT = 50.0
"""Below this CPU use, a late generator was starved by other processes, not busy itself."""

PROTOCOLS = ("tfserving-rest", "tfserving-grpc", "v2-rest", "v2-grpc")
"""The protocols a target may speak."""


@dataclass(frozen=True)
class GeneratorHealth:
    """How well the generator kept to its schedule, and the verdict."""

    schedule_lag_ms: dict[str, float]
    cpu_percent: float
    offered_rps: float
    dispatched_rps: float
    target_healthy: bool
    saturated: bool
    message: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


def assess_generator(stats: RunStats, window_s: float, warmup_s: float, cpu_s: float,
                     wall_s: float) -> GeneratorHealth:
    """Judge the generator from its measured lag and rate (see the module docstring)."""
    lag = stats.histograms["schedule_lag"]
    lag_ms = {"p50": lag.percentile(50) / 1e3, "p99": lag.percentile(99) / 1e3,
              "max": lag.max / 1e3}
    scheduled = stats.scheduled
    window_s = max(window_s, 1e-9)
    offered_rps = scheduled / window_s
    dispatch_span_s = stats.last_dispatched_ns / 1e9 - warmup_s
    dispatched_rps = scheduled / max(window_s, dispatch_span_s) if scheduled else 0.0
    ended = sum(stats.count(s) for s in (Status.OK, Status.ERROR, Status.TIMEOUT,
                                         Status.MODEL_ERROR))
    failures = stats.count(Status.ERROR) + stats.count(Status.TIMEOUT)
    target_healthy = ended > 0 and failures <= HEALTHY_FAILURE_SHARE * ended
    late = lag_ms["p99"] > LAG_P99_LIMIT_MS
    slow = scheduled > 0 and dispatched_rps < RATE_SHARE_LIMIT * offered_rps
    saturated = late or (slow and target_healthy)
    cpu_percent = 100.0 * cpu_s / wall_s if wall_s > 0 else 0.0
    message = None
    if saturated:
        rate = min(dispatched_rps, offered_rps)
        message = f"generator saturated above {rate:.0f} req/s on this machine; add --workers"
        if cpu_percent < BUSY_MACHINE_CPU_PERCENT:
            # Late while mostly idle: the cores were busy with something else.
            message += (f" (it used only {cpu_percent:.0f}% CPU: other processes are "
                        "competing for this machine's cores)")
        if not target_healthy and ended:
            message += (f"; {failures / ended:.0%} of requests also failed or timed out, "
                        "part of which may be the generator's own lateness")
    return GeneratorHealth(lag_ms, cpu_percent, offered_rps, dispatched_rps, target_healthy,
                           saturated, message)


# ---------------------------------------------------------------------- the target


def _http_get(url: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, headers={"accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
            return bytes(answer.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode("utf-8", "replace").strip()
        raise TargetError(f"{url} answered HTTP {exc.code}: {detail or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TargetError(f"cannot reach {url}: {reason}") from None


def _grpc_call(target: str, method: str, body: bytes, timeout_s: float) -> bytes:
    import grpc

    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            return bytes(call(body, timeout=timeout_s))
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            name = code.name if code is not None else "UNKNOWN"
            if name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                raise TargetError(f"cannot reach {target} over gRPC: {name} "
                                  f"({(details or '').splitlines()[0] if details else ''})"
                                  ) from None
            raise TargetError(f"{target} answered {method} with {name}: {details}") from None


def http_base(url: str) -> str:
    """An HTTP target's base URL: ``http://`` added when no scheme is given, no trailing /."""
    text = url.strip().rstrip("/")
    parsed = urllib.parse.urlsplit(text if "://" in text else f"http://{text}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"HTTP target '{url}' must look like http://127.0.0.1:8501")
    return urllib.parse.urlunsplit(parsed)


def probe_target(url: str, protocol: str, model: str, timeout_s: float = 5.0) -> Signature:
    """The signature of ``model`` from the target's metadata; TargetError naming the address."""
    from modelcaliper.load.grpc import parse_grpc_target

    try:
        if protocol == "tfserving-rest":
            from modelcaliper.wire.tfserving_rest_meta import decode_model_metadata, model_path

            body = _http_get(f"{http_base(url)}{model_path(model)}/metadata", timeout_s)
            return decode_model_metadata(body)
        if protocol == "v2-rest":
            from modelcaliper.wire.openinference_rest_meta import decode_model_metadata as v2_meta
            from modelcaliper.wire.openinference_rest_meta import model_path as v2_path

            return v2_meta(_http_get(f"{http_base(url)}{v2_path(model)}", timeout_s)).signature
        if protocol == "tfserving-grpc":
            from modelcaliper.wire.grpc_methods import TFS_GET_MODEL_METADATA
            from modelcaliper.wire.tfserving_grpc_meta import (
                ModelRef,
                decode_metadata_response,
                encode_metadata_request,
            )

            body = _grpc_call(parse_grpc_target(url), TFS_GET_MODEL_METADATA,
                              encode_metadata_request(ModelRef(model)), timeout_s)
            return decode_metadata_response(body).signature()
        if protocol == "v2-grpc":
            from modelcaliper.wire.grpc_methods import V2_MODEL_METADATA
            from modelcaliper.wire.openinference_grpc_meta import (
                decode_model_metadata_response,
                encode_model_metadata_request,
            )

            body = _grpc_call(parse_grpc_target(url), V2_MODEL_METADATA,
                              encode_model_metadata_request(model), timeout_s)
            return decode_model_metadata_response(body).signature
    except (TargetError, UsageError):
        raise
    except CaliperError as exc:
        raise TargetError(f"{url}: the metadata of model '{model}' is unusable: {exc}") from None
    raise UsageError(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
