"""signature_from_server against metadata endpoints served on 127.0.0.1 (REST and gRPC)."""

from __future__ import annotations

import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from modelcaliper.errors import TargetError
from modelcaliper.signature import Signature
from modelcaliper.wire import openinference_grpc_meta as v2_grpc
from modelcaliper.wire import openinference_rest_meta as v2_rest
from modelcaliper.wire import tfserving_grpc_meta as tfs_grpc
from modelcaliper.wire import tfserving_rest_meta as tfs_rest
from modelcaliper.wire.grpc_methods import TFS_GET_MODEL_METADATA, V2_MODEL_METADATA
from modelcaliper.workload.synthetic import signature_from_server, synthetic_columns

SIG = Signature.from_dict({
    "inputs": [{"name": "price", "dtype": "float32", "shape": [-1]},
               {"name": "country", "dtype": "string", "shape": [-1]},
               {"name": "emb", "dtype": "float32", "shape": [-1, 8]}],
    "outputs": [{"name": "score", "dtype": "float32", "shape": [-1, 1]}],
})


@pytest.fixture(scope="module")
def rest_server():
    bodies = {
        "/v1/models/ranker/metadata": tfs_rest.encode_model_metadata(SIG, "ranker").body,
        "/v2/models/ranker": v2_rest.encode_model_metadata(SIG, "ranker").body,
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = bodies.get(self.path)
            self.send_response(200 if body else 404)
            payload = body or b'{"error": "no such model"}'
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def grpc_server():
    answers = {
        TFS_GET_MODEL_METADATA: tfs_grpc.encode_metadata_response(tfs_grpc.ModelRef("ranker"),
                                                                  [SIG]),
        V2_MODEL_METADATA: v2_grpc.encode_model_metadata_response("ranker", SIG),
    }

    class Handler(grpc.GenericRpcHandler):
        def service(self, details):
            body = answers.get(details.method)
            if body is None:
                return None
            return grpc.unary_unary_rpc_method_handler(lambda request, context: body)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((Handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def _same(sig: Signature) -> None:
    # TF Serving's metadata is a map, so only the set of inputs is fixed, not their order
    assert sorted((s.name, s.dtype.v2, s.shape) for s in sig.inputs) == sorted(
        (s.name, s.dtype.v2, s.shape) for s in SIG.inputs)


@pytest.mark.parametrize("protocol", ["tfserving-rest", "v2-rest"])
def test_rest_metadata(rest_server, protocol):
    sig = signature_from_server(rest_server, protocol, "ranker")
    _same(sig)
    # a signature from a server feeds the synthetic generator like a file's does
    assert synthetic_columns(sig, 10)["emb"].shape == (10, 8)


@pytest.mark.parametrize("protocol", ["tfserving-grpc", "v2-grpc"])
def test_grpc_metadata(grpc_server, protocol):
    _same(signature_from_server(grpc_server, protocol, "ranker"))


def test_unknown_model_is_a_target_error(rest_server):
    with pytest.raises(TargetError, match="HTTP 404"):
        signature_from_server(rest_server, "tfserving-rest", "other")


def test_unreachable_server_is_a_target_error():
    with pytest.raises(TargetError, match="cannot reach"):
        signature_from_server("http://127.0.0.1:9", "v2-rest", "ranker", timeout_s=2)
