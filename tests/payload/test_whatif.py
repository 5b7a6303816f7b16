"""The what-if helpers on their own: finding context inputs and counting name bytes."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelcaliper.errors import WireError
from modelcaliper.payload.whatif import context_inputs, name_bytes, short_names_whatif
from modelcaliper.signature import Signature
from modelcaliper.wire import Encoded, InferRequest

SIG = Signature.from_dict(
    {
        "inputs": [
            {"name": "country", "dtype": "BYTES"},
            {"name": "price", "dtype": "FP32"},
            {"name": "user_vec", "dtype": "FP32", "shape": [-1, 2]},
        ]
    }
)


def columns(group, country, price, user_vec) -> dict[str, np.ndarray]:
    return {
        "q": np.array(group),
        "country": np.array(country, dtype=object),
        "price": np.array(price, dtype=np.float32),
        "user_vec": np.array(user_vec, dtype=np.float32),
    }


@pytest.mark.parametrize(
    ("cols", "expected"),
    [
        # country and the user vector repeat within each query; price changes
        (
            columns(
                [1, 1, 2, 2],
                ["de", "de", "fr", "fr"],
                [1, 2, 3, 4],
                [[0, 1], [0, 1], [5, 5], [5, 5]],
            ),
            ["country", "user_vec"],
        ),
        # one element of the vector changes within a query, so the vector is not context
        (
            columns(
                [1, 1, 2, 2],
                ["de", "de", "fr", "fr"],
                [1, 2, 3, 4],
                [[0, 1], [0, 2], [5, 5], [5, 5]],
            ),
            ["country"],
        ),
        # groups interleaved in the data are still recognised
        (
            columns([1, 2, 1, 2], ["de", "fr", "de", "fr"], [1, 1, 2, 2], [[0, 0]] * 4),
            ["country", "user_vec"],
        ),
        # a value constant over everything is context too
        (
            columns([1, 1, 2, 2], ["de"] * 4, [7, 7, 7, 7], [[0, 0]] * 4),
            ["country", "price", "user_vec"],
        ),
        # one row per group proves nothing
        (columns([1, 2, 3, 4], ["de"] * 4, [7] * 4, [[0, 0]] * 4), []),
    ],
)
def test_context_inputs(cols, expected):
    assert context_inputs(SIG, cols, "q") == expected


def test_no_group_column_no_context():
    cols = columns([1, 1], ["de", "de"], [1, 1], [[0, 0]] * 2)
    assert context_inputs(SIG, cols, None) == []


@pytest.mark.parametrize(
    ("encoded", "names", "expected"),
    [
        # each occurrence of a quoted name counts, without its quotes
        (
            Encoded(b'{"instances":[{"price":1,"country":"de"},{"price":2,"country":"fr"}]}'),
            ["price", "country"],
            2 * 5 + 2 * 7,
        ),
        # a name as a value ("name": "price") counts as well: it is the name on the wire
        (Encoded(b'{"inputs":[{"name":"price","datatype":"FP32"}]}'), ["price"], 5),
        # names are searched in their JSON spelling
        (Encoded(b'{"inputs":{"caf\xc3\xa9":[1]}}'), ["café"], len("café".encode())),
        # the binary tail of a v2 binary body is tensor data, not JSON
        (
            Encoded(
                b'{"inputs":[{"name":"x"}]}' + b'"x"', (("inference-header-content-length", "24"),)
            ),
            ["x"],
            1,
        ),
    ],
)
def test_name_bytes(encoded, names, expected):
    assert name_bytes(encoded, names) == expected


class PickyCodec:
    """A stand-in codec that refuses requests whose input names start with ``refuse``."""

    name = "picky"
    transport = "http"

    def __init__(self, refuse: str) -> None:
        self.refuse = refuse

    def encode_request(self, request: InferRequest) -> Encoded:
        if any(name.startswith(self.refuse) for name in request.inputs):
            raise WireError("refused", tensor=next(iter(request.inputs)))
        return Encoded(orjson.dumps({n: t.tolist() for n, t in request.inputs.items()}))


REQUESTS = {2: [InferRequest({"price": np.array([1.0, 2.0])})]}


@pytest.mark.parametrize(
    ("refuse", "error"),
    [
        # the renamed request is refused: the reason says so
        ("f", "cannot rename the inputs: tensor 'f0': refused"),
        # the request itself is refused: nothing can be compared
        ("price", "cannot encode these requests: tensor 'price': refused"),
    ],
)
def test_refusals_become_entries_not_crashes(refuse, error):
    (entry,) = short_names_whatif(REQUESTS, {"picky": PickyCodec(refuse)})["results"]
    assert entry == {"batch_size": 2, "encoding": "picky", "error": error}


def test_short_names_counts_what_it_renames():
    (entry,) = short_names_whatif(REQUESTS, {"picky": PickyCodec("nothing")})["results"]
    # {"price":[1.0,2.0]} -> {"f0":[1.0,2.0]}
    assert entry["name_bytes"] == 5
    assert entry["saving_bytes"] == 3
    assert entry["request_bytes"] == len(b'{"price":[1.0,2.0]}')
