"""What every wire codec looks like: encode/decode requests and responses to and from bytes.

A codec is stateless and cheap to call. The load generator encodes requests once, before
the clock starts, and sends the resulting ``Encoded.body`` as it is; the embedded server
decodes requests and encodes responses with the same codec, so both sides agree byte for
byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from modelcaliper.wire.tensors import InferRequest, InferResponse

__all__ = ["DEFAULT_MAX_BODY_BYTES", "Codec", "Encoded", "Headers"]

Headers = Mapping[str, str]
"""HTTP headers or gRPC metadata, with lower-case names."""

DEFAULT_MAX_BODY_BYTES = 256 * 1024 * 1024
"""Largest body (or declared length) a decoder accepts unless told otherwise."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """A serialized message and the headers (or gRPC metadata) that must travel with it."""

    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or None."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


@runtime_checkable
class Codec(Protocol):
    """One wire encoding of model requests and responses (see ``modelcaliper.wire.ENCODINGS``)."""

    name: str
    transport: Literal["http", "grpc"]

    def encode_request(self, request: InferRequest) -> Encoded:
        """Serialize a request as a client sends it."""
        ...

    def decode_request(self, body: bytes, headers: Headers | None = None) -> InferRequest:
        """Parse a request as a server receives it; raise ``WireError`` if malformed."""
        ...

    def encode_response(
        self, response: InferResponse, request: InferRequest | None = None
    ) -> Encoded:
        """Serialize a response the way the client of ``request`` expects it."""
        ...

    def decode_response(self, body: bytes, headers: Headers | None = None) -> InferResponse:
        """Parse a response as a client receives it; raise ``WireError`` if malformed."""
        ...
