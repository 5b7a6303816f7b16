"""The curated public API: exactly these names, each importable and documented."""

from __future__ import annotations

import modelcaliper

EXPECTED = {
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
}


def test_all_lists_exactly_the_public_names():
    assert set(modelcaliper.__all__) == EXPECTED


def test_every_public_name_exists_and_callables_have_docstrings():
    for name in modelcaliper.__all__:
        obj = getattr(modelcaliper, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_every_encoding_has_a_codec():
    for name in modelcaliper.ENCODINGS:
        codec = modelcaliper.get_codec(name)
        assert codec.name == name
        assert codec.transport in ("http", "grpc")
