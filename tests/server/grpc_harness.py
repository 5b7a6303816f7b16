"""An in-process gRPC test server on 127.0.0.1 and the helpers its tests share.

``LoopThread`` runs one asyncio event loop in a daemon thread; ``Served`` builds a server with
``build_grpc_server`` on that loop and opens a blocking channel to it, so tests can use the
blocking clients of TF Serving, tritonclient and ``grpc_methods``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any

import grpc
import grpc.aio
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from modelcaliper.server.grpc_server import build_grpc_server
from modelcaliper.server.metrics import Metrics
from modelcaliper.server.service import ModelService, ServiceOptions
from modelcaliper.wire import grpc_methods as gm
from modelcaliper.wire.openinference_grpc import V2GrpcCodec
from modelcaliper.wire.tfserving_grpc import TFServingGrpcCodec

__all__ = [
    "CODECS",
    "INFER_METHOD",
    "MLP_LIMIT_BYTES",
    "TIMEOUT_S",
    "ControlledRuntime",
    "LoopThread",
    "Served",
    "rpc_error",
    "serve",
    "serve_mlp",
    "tf_predict_request",
]

TIMEOUT_S = 30
"""Deadline of every test call, and the longest wait for the server's loop."""

MLP_LIMIT_BYTES = 1024 * 1024
"""The MLP server's message limit: small enough to exceed cheaply."""

CODECS = {"tfserving-grpc": TFServingGrpcCodec(), "v2-grpc": V2GrpcCodec()}
"""The two gRPC encodings, by name."""

INFER_METHOD = {"tfserving-grpc": gm.TFS_PREDICT, "v2-grpc": gm.V2_MODEL_INFER}
"""The inference method each encoding calls."""


class LoopThread:
    """An asyncio event loop running in a daemon thread; coroutines are submitted to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT_S)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT_S)
        self.loop.close()


class Served:
    """One ``ModelService`` behind a started gRPC server, and blocking channels to it."""

    def __init__(self, loop: LoopThread, service: ModelService, **options: Any) -> None:
        self.loop, self.service, self.metrics = loop, service, Metrics()

        async def start() -> tuple[grpc.aio.Server, int]:
            server, port = build_grpc_server(service, self.metrics, **options)
            await server.start()
            return server, port

        self.server, self.port = loop.run(start())
        self.address = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.address)

    def call(self, method: str, body: bytes, **kw: Any) -> tuple[bytes, dict[str, str]]:
        """Send ``body`` to ``method`` with our bytes client; the reply and trailing metadata."""
        reply, call = gm.unary_bytes_call(self.channel, method).with_call(
            body, timeout=TIMEOUT_S, **kw)
        return reply, dict(call.trailing_metadata())

    def close(self) -> None:
        """Close the channel, stop the server and release the model threads."""
        self.channel.close()
        self.loop.run(self.server.stop(None))
        self.service.close()


class ControlledRuntime:
    """A real runtime that can be made to fail or to take longer, for failure tests."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.signature, self.platform, self.version = inner.signature, inner.platform, "1"
        self.fail = False
        self.delay_s = 0.0

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The inner runtime's prediction, after ``delay_s``; raises while ``fail`` is set."""
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("simulated kernel failure in Gemm")
        return self.inner.predict(inputs)  # type: ignore[no-any-return]

    def start_profiling(self, out_dir: Any) -> None:
        """Delegated to the inner runtime."""
        self.inner.start_profiling(out_dir)

    def stop_profiling(self) -> Any:
        """Delegated to the inner runtime."""
        return self.inner.stop_profiling()


def serve(loop: LoopThread, runtime: Any, name: str, version: str, ready: bool = True,
          options: ServiceOptions | None = None, **server_options: Any) -> Served:
    """Serve ``runtime`` as ``name``/``version`` on ``loop`` (ready unless told otherwise)."""
    service = ModelService(runtime, model_name=name, version=version, options=options)
    service.ready = ready
    return Served(loop, service, **server_options)


def serve_mlp(loop: LoopThread, runtime: Any) -> Served:
    """The MLP as model 'mlp' version 1, behind a ``ControlledRuntime``, with a 1 MiB limit."""
    return serve(loop, ControlledRuntime(runtime), "mlp", "1", max_message_bytes=MLP_LIMIT_BYTES)


def tf_predict_request(name: str, inputs: Mapping[str, np.ndarray], **spec: Any):
    """A ``PredictRequest`` built by TensorFlow, as a TF Serving user builds one."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        setattr(request.model_spec, key, value)
    for key, array in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(array))
    return request


def rpc_error(fn: Any, *args: Any, **kw: Any) -> grpc.RpcError:
    """The ``grpc.RpcError`` that ``fn(*args, **kw)`` must raise."""
    with pytest.raises(grpc.RpcError) as caught:
        fn(*args, **kw)
    return caught.value
