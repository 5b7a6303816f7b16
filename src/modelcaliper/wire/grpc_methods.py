"""gRPC method paths of TF Serving and the v2 protocol, and bytes-only call and handler helpers.

The load generator serializes requests before the clock starts, so the gRPC layer must not
serialize again: ``unary_bytes_call`` and ``bytes_service_handler`` use identity serializers
(bytes in, bytes out) on the client and the server side alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
import grpc.aio

from modelcaliper.errors import UsageError

__all__ = [
    "TFS_GET_MODEL_METADATA",
    "TFS_GET_MODEL_STATUS",
    "TFS_MODEL_SERVICE",
    "TFS_PREDICT",
    "TFS_PREDICTION_SERVICE",
    "V2_MODEL_INFER",
    "V2_MODEL_METADATA",
    "V2_MODEL_READY",
    "V2_SERVER_LIVE",
    "V2_SERVER_METADATA",
    "V2_SERVER_READY",
    "V2_SERVICE",
    "BytesHandler",
    "bytes_service_handler",
    "grpc_compression",
    "method_path",
    "split_method",
    "unary_bytes_call",
]

TFS_PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
TFS_MODEL_SERVICE = "tensorflow.serving.ModelService"
V2_SERVICE = "inference.GRPCInferenceService"


def method_path(service: str, method: str) -> str:
    """The full path gRPC sends for ``method`` of ``service``: ``/service/method``."""
    return f"/{service}/{method}"


def split_method(path: str) -> tuple[str, str]:
    """``(service, method)`` of a full method path such as ``/inference.X/ModelInfer``."""
    service, _, method = path.lstrip("/").rpartition("/")
    if not service or not method:
        raise UsageError(f"gRPC method path '{path}' is not of the form /package.Service/Method")
    return service, method


TFS_PREDICT = method_path(TFS_PREDICTION_SERVICE, "Predict")
TFS_GET_MODEL_METADATA = method_path(TFS_PREDICTION_SERVICE, "GetModelMetadata")
TFS_GET_MODEL_STATUS = method_path(TFS_MODEL_SERVICE, "GetModelStatus")

V2_SERVER_LIVE = method_path(V2_SERVICE, "ServerLive")
V2_SERVER_READY = method_path(V2_SERVICE, "ServerReady")
V2_MODEL_READY = method_path(V2_SERVICE, "ModelReady")
V2_SERVER_METADATA = method_path(V2_SERVICE, "ServerMetadata")
V2_MODEL_METADATA = method_path(V2_SERVICE, "ModelMetadata")
V2_MODEL_INFER = method_path(V2_SERVICE, "ModelInfer")

BytesHandler = Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]
"""A server-side unary method: receives the request bytes and returns the response bytes."""


def unary_bytes_call(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
    """A callable for ``method`` on ``channel`` that sends and returns bytes unchanged."""
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


def bytes_service_handler(
    service: str, methods: Mapping[str, BytesHandler]
) -> grpc.GenericRpcHandler:
    """A generic handler serving ``methods`` (short name -> handler) of ``service`` as bytes.

    Register it with ``server.add_generic_rpc_handlers((handler,))``.
    """
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=None, response_serializer=None
        )
        for name, fn in methods.items()
    }
    return grpc.method_handlers_generic_handler(service, handlers)


_COMPRESSIONS = {
    "none": grpc.Compression.NoCompression,
    "identity": grpc.Compression.NoCompression,
    "gzip": grpc.Compression.Gzip,
    "deflate": grpc.Compression.Deflate,
}


def grpc_compression(name: str) -> grpc.Compression:
    """The ``grpc.Compression`` for a compression name (``none``, ``gzip`` or ``deflate``)."""
    found = _COMPRESSIONS.get(name.strip().lower())
    if found is None:
        raise UsageError(f"gRPC calls support none, gzip or deflate compression, not '{name}'")
    return found
