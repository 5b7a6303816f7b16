"""The gRPC front end of the embedded server: TF Serving's and the v2 protocol's services.

``build_grpc_server`` returns a ``grpc.aio`` server (not yet started) answering

    tensorflow.serving.PredictionService   Predict, GetModelMetadata
    tensorflow.serving.ModelService        GetModelStatus
    inference.GRPCInferenceService         ServerLive, ServerReady, ModelReady, ServerMetadata,
                                           ModelMetadata, ModelInfer

through generic bytes handlers: gRPC hands each method the request's bytes and sends back the
bytes it returns, and our codecs do all the (de)serialization, so a message is parsed once.

Each Predict / ModelInfer call is timed in phases (``server.timing``) and answers them as the
``server-timing`` trailing metadata entry, on success and on failure alike, listing every
phase of ``REPORTED_PHASES`` (0 when the call did not get that far) as the HTTP front end
does; a failed call's time since its last phase goes to the phase it failed in. gRPC hands a
handler the complete message, so the time spent receiving it is invisible here: ``recv`` is
always 0 and ``total`` runs from the handler's start to the encoded response. An
``x-request-id`` sent as metadata comes back in the trailing metadata of every call, and
every call is counted in the metrics (entrypoint ``GRPC``, the same ``API`` names as REST).
A Predict asking for a signature other than the served one is INVALID_ARGUMENT.

Failures are answered with the gRPC code ``service.classify_failure`` picks. A model that is
not ready (still warming up) answers Predict / ModelInfer with UNAVAILABLE and the readiness
calls with ``false``. Unknown models and versions are NOT_FOUND for the metadata and status
calls; ``ModelReady`` answers ``ready: false`` for them instead, as Triton does.

Size limits are gRPC's own channel options: a message larger than ``max_message_bytes``
(after decompression) is refused by gRPC with RESOURCE_EXHAUSTED before a handler runs.
Compressed requests (gzip, deflate) are decompressed by gRPC. gRPC does not show a handler
the ``grpc-encoding`` a client used, so responses cannot mirror it and are sent uncompressed.

Call ``build_grpc_server`` inside the event loop that will run the server: a ``grpc.aio``
server belongs to the loop it was created in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from modelcaliper import __version__
from modelcaliper.errors import PayloadTooLargeError, UsageError, WireError
from modelcaliper.server.metrics import Metrics
from modelcaliper.server.service import ModelService, OverloadedError, classify_failure
from modelcaliper.server.timing import (
    REPORTED_PHASES,
    PhaseTimer,
    charge_failed_phase,
    format_server_timing,
)
from modelcaliper.wire import grpc_methods as gm
from modelcaliper.wire import openinference_grpc_meta as v2meta
from modelcaliper.wire import tfserving_grpc_meta as tfmeta
from modelcaliper.wire.base import Codec
from modelcaliper.wire.openinference_grpc import V2GrpcCodec
from modelcaliper.wire.tfserving_grpc import TFServingGrpcCodec

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ENTRYPOINT",
    "SERVER_EXTENSIONS",
    "SERVER_NAME",
    "GrpcFrontEnd",
    "build_grpc_server",
]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest request or response message, in bytes, unless told otherwise."""

ENTRYPOINT = "GRPC"
"""The ``entrypoint`` label of this front end's requests in the metrics (TF Serving's name)."""

SERVER_NAME = "modelcaliper"
"""The server name ``ServerMetadata`` reports."""

SERVER_EXTENSIONS: tuple[str, ...] = ("binary_tensor_data",)
"""The v2 protocol extensions ``ServerMetadata`` lists (those the server as a whole supports)."""

_TRAILER_TIMING = "server-timing"
_REQUEST_ID = "x-request-id"
_TF_METADATA_FIELDS = ("signature_def",)

_ReplyFn = Callable[[bytes], bytes]


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[tuple[str, str], ...]:
    """The ``x-request-id`` trailing metadata entry echoing the client's, if it sent one."""
    for key, value in context.invocation_metadata() or ():
        if key == _REQUEST_ID:
            return ((_REQUEST_ID, value),)
    return ()


def _tf_version(version: str) -> str | None:
    # TF Serving's versions are integers; a model served under another label has none there.
    return version if version.isdigit() else None


class GrpcFrontEnd:
    """The method handlers of the three gRPC services, bound to one ``ModelService``."""

    def __init__(
        self,
        service: ModelService,
        metrics: Metrics,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self._tfs = TFServingGrpcCodec(max_body_bytes=max_message_bytes)
        self._v2 = V2GrpcCodec(max_body_bytes=max_message_bytes)
        self._tf_served_version = _tf_version(service.version)

    def handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        """Generic bytes handlers for ``server.add_generic_rpc_handlers``."""
        return (
            gm.bytes_service_handler(gm.TFS_PREDICTION_SERVICE, {
                "Predict": self._inference(self._tfs, "predict", self._tf_served_version),
                "GetModelMetadata": self._unary(self.tf_model_metadata, "model_metadata"),
            }),
            gm.bytes_service_handler(gm.TFS_MODEL_SERVICE, {
                "GetModelStatus": self._unary(self.tf_model_status, "model_status"),
            }),
            gm.bytes_service_handler(gm.V2_SERVICE, {
                "ModelInfer": self._inference(self._v2, "infer", self.service.version),
                "ServerLive": self._unary(self.server_live, "health_live"),
                "ServerReady": self._unary(self.server_ready, "health_ready"),
                "ModelReady": self._unary(self.model_ready, "model_ready"),
                "ServerMetadata": self._unary(self.server_metadata, "server_metadata"),
                "ModelMetadata": self._unary(self.model_metadata, "model_metadata"),
            }),
        )

    # ------------------------------------------------------------------ inference

    def _inference(self, codec: Codec, api: str, reply_version: str | None) -> gm.BytesHandler:
        """A Predict / ModelInfer handler: decode, infer, encode, with phases and metrics."""
        service, metrics = self.service, self.metrics

        async def handler(body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            timer = PhaseTimer()
            # gRPC calls us with the whole message already read: nothing left to time.
            timer.add("recv", 0)
            rows = 0
            status = grpc.StatusCode.OK
            message = ""
            reply = b""
            try:
                request = codec.decode_request(body)
                timer.lap("decode")
                rows = request.batch_size
                response = await service.infer(request, timer)
                response.model_version = reply_version
                reply = codec.encode_response(response, request).body
                timer.lap("encode")
            except Exception as exc:  # every failure becomes a status; the server keeps serving
                charge_failed_phase(timer)
                failure = classify_failure(exc)
                status, message = grpc.StatusCode[failure.grpc_code], failure.message
                if isinstance(exc, OverloadedError | PayloadTooLargeError):
                    reason = "overloaded" if isinstance(exc, OverloadedError) else "too_large"
                    metrics.inc("caliper_server_rejected_total", {"reason": reason},
                                help_text="Requests refused by overload or size limits.")
            phases_ms = timer.finish()
            for phase in REPORTED_PHASES:
                phases_ms.setdefault(phase, 0.0)
            trailing = ((_TRAILER_TIMING, format_server_timing(phases_ms)), *_request_id(context))
            metrics.record_request(model=service.model_name, api=api, entrypoint=ENTRYPOINT,
                                   status=status.name, phases_ms=phases_ms, batch_rows=rows)
            if status is not grpc.StatusCode.OK:
                await context.abort(status, message, trailing_metadata=trailing)
            context.set_trailing_metadata(trailing)
            return reply

        return handler

    # ------------------------------------------------------------------ the other calls

    def _unary(self, answer: _ReplyFn, api: str) -> gm.BytesHandler:
        """A handler returning ``answer(body)``, counted as ``api``; exceptions become statuses."""
        service, metrics = self.service, self.metrics

        async def handler(body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            trailing = _request_id(context)
            try:
                reply = answer(body)
            except Exception as exc:  # every failure becomes a status; the server keeps serving
                failure = classify_failure(exc)
                status, message = grpc.StatusCode[failure.grpc_code], failure.message
            else:
                status, message = grpc.StatusCode.OK, ""
            metrics.record_request(model=service.model_name, api=api, entrypoint=ENTRYPOINT,
                                   status=status.name, phases_ms={}, batch_rows=0)
            if status is not grpc.StatusCode.OK:
                await context.abort(status, message, trailing_metadata=trailing)
            if trailing:
                context.set_trailing_metadata(trailing)
            return reply

        return handler

    def tf_model_metadata(self, body: bytes) -> bytes:
        """``GetModelMetadata``: the served signature as a ``SignatureDefMap``."""
        model, fields = tfmeta.decode_metadata_request(body, self.max_message_bytes)
        self.service.check_model(model.name, model.version, model.version_label)
        if not fields:
            raise WireError("GetModelMetadataRequest names no metadata_field; "
                            f"ask for one of: {', '.join(_TF_METADATA_FIELDS)}")
        for name in fields:
            if name not in _TF_METADATA_FIELDS:
                raise WireError(f"metadata_field '{name}' is not supported; "
                                f"ask for one of: {', '.join(_TF_METADATA_FIELDS)}")
        served = tfmeta.ModelRef(self.service.model_name, self._tf_served_version)
        return tfmeta.encode_metadata_response(served, [self.service.runtime.signature])

    def tf_model_status(self, body: bytes) -> bytes:
        """``GetModelStatus``: the served version, ``AVAILABLE`` once ready, else ``LOADING``."""
        model = tfmeta.decode_status_request(body, self.max_message_bytes)
        self.service.check_model(model.name, model.version, model.version_label)
        state = "AVAILABLE" if self.service.ready else "LOADING"
        number = int(self._tf_served_version or 0)
        return tfmeta.encode_status_response([tfmeta.VersionStatus(number, state)])

    def server_live(self, body: bytes) -> bytes:
        """``ServerLive``: always true while the process answers."""
        return v2meta.encode_ready(True)

    def server_ready(self, body: bytes) -> bytes:
        """``ServerReady``: true once the model is warmed up."""
        return v2meta.encode_ready(self.service.ready)

    def model_ready(self, body: bytes) -> bytes:
        """``ModelReady``: true for the served model once ready; false for any other model."""
        name, version = v2meta.decode_model_ready_request(body, self.max_message_bytes)
        served = name == self.service.model_name and version in (None, self.service.version)
        return v2meta.encode_ready(served and self.service.ready)

    def server_metadata(self, body: bytes) -> bytes:
        """``ServerMetadata``: server name, version and extensions."""
        return v2meta.encode_server_metadata_response(
            v2meta.ServerMetadata(SERVER_NAME, __version__, SERVER_EXTENSIONS)
        )

    def model_metadata(self, body: bytes) -> bytes:
        """``ModelMetadata``: the served model's signature, version and platform."""
        name, version = v2meta.decode_model_metadata_request(body, self.max_message_bytes)
        self.service.check_model(name, version)
        runtime = self.service.runtime
        return v2meta.encode_model_metadata_response(
            self.service.model_name, runtime.signature, [self.service.version], runtime.platform
        )


def _listen_address(host: str, port: int) -> str:
    if not 0 <= port <= 65535:
        raise UsageError(f"gRPC port must be between 0 and 65535 (0 picks a free one), got {port}")
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def build_grpc_server(
    service: ModelService,
    metrics: Metrics,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> tuple[grpc.aio.Server, int]:
    """A ``grpc.aio`` server for ``service`` bound to ``host:port`` (not started), and its port.

    Port 0 picks a free port. A port already in use raises ``UsageError``.
    """
    if max_message_bytes < 1:
        raise UsageError(f"max_message_bytes must be ≥ 1, got {max_message_bytes}")
    address = _listen_address(host, port)
    front = GrpcFrontEnd(service, metrics, max_message_bytes=max_message_bytes)
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # gRPC sets SO_REUSEPORT by default, which lets two servers share a port silently.
        ("grpc.so_reuseport", 0),
    ])
    server.add_generic_rpc_handlers(front.handlers())
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise UsageError(f"cannot listen for gRPC on {address}: the port is in use or the "
                         "address is not this machine's; pick another port, or 0 for a free one")
    return server, bound
