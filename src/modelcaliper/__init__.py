"""modelcaliper: load-test and profile a freshly trained model the way production calls it."""

from __future__ import annotations

from modelcaliper.api import run
from modelcaliper.errors import (
    CaliperError,
    DataError,
    MissingExtraError,
    PayloadTooLargeError,
    TargetError,
    UsageError,
    WireError,
)
from modelcaliper.signature import Signature, TensorSpec, load_signature_file
from modelcaliper.wire import ENCODINGS, DType, InferRequest, InferResponse, get_codec

__version__ = "0.1.0"

__all__ = [
    "ENCODINGS",
    "CaliperError",
    "DType",
    "DataError",
    "InferRequest",
    "InferResponse",
    "MissingExtraError",
    "PayloadTooLargeError",
    "Signature",
    "TargetError",
    "TensorSpec",
    "UsageError",
    "WireError",
    "__version__",
    "get_codec",
    "load_signature_file",
    "run",
]
