"""Wire formats: TF Serving REST/gRPC and the Open Inference Protocol v2 REST/gRPC.

``ENCODINGS`` names the six request encodings the tool speaks; ``get_codec(name)`` returns
the codec for one of them.
"""

from __future__ import annotations

from modelcaliper.wire.base import Codec, Encoded
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse, as_tensor, parse_dtype

__all__ = [
    "ENCODINGS",
    "Codec",
    "DType",
    "Encoded",
    "InferRequest",
    "InferResponse",
    "as_tensor",
    "get_codec",
    "parse_dtype",
]

ENCODINGS: tuple[str, ...] = (
    "tfserving-rest rows",
    "tfserving-rest columnar",
    "tfserving-grpc",
    "v2-rest json",
    "v2-rest binary",
    "v2-grpc",
)


def get_codec(name: str) -> Codec:
    """The codec for encoding ``name`` (one of ``ENCODINGS``)."""
    from modelcaliper.errors import UsageError

    if name == "tfserving-rest rows":
        from modelcaliper.wire.tfserving_rest import TFServingRestCodec

        return TFServingRestCodec(format="rows")
    if name == "tfserving-rest columnar":
        from modelcaliper.wire.tfserving_rest import TFServingRestCodec

        return TFServingRestCodec(format="columnar")
    if name == "tfserving-grpc":
        from modelcaliper.wire.tfserving_grpc import TFServingGrpcCodec

        return TFServingGrpcCodec()
    if name == "v2-rest json":
        from modelcaliper.wire.openinference_rest import V2RestCodec

        return V2RestCodec(binary=False)
    if name == "v2-rest binary":
        from modelcaliper.wire.openinference_rest import V2RestCodec

        return V2RestCodec(binary=True)
    if name == "v2-grpc":
        from modelcaliper.wire.openinference_grpc import V2GrpcCodec

        return V2GrpcCodec()
    raise UsageError(f"unknown encoding '{name}'; choose one of: {', '.join(ENCODINGS)}")
