"""Sweep axes: comma lists parsed once, contradictions refused with one line naming the flag."""

from __future__ import annotations

from typing import Any

import pytest

from modelcaliper.errors import UsageError
from modelcaliper.sweep.axes import (
    Wire,
    check_fixed_server_args,
    parse_axes,
    server_flags,
    split_list,
)


def axes(**given: Any) -> Any:
    options: dict[str, Any] = {"protocol": None, "encoding": None, "compression": None,
                               "batch_size": None, "rps": None}
    options.update(given)
    return parse_axes(**options)


@pytest.mark.parametrize(("given", "wires", "batch_sizes", "rates"), [
    # defaults: the embedded default protocol, no compression, batch 1, 50 req/s
    ({}, ["v2-grpc"], (1,), (50.0,)),
    # every list is split on commas and spaces; repeats are kept once
    ({"batch_size": "5, 10,25,10", "rps": "20 40"}, ["v2-grpc"], (5, 10, 25), (20.0, 40.0)),
    # an encoding list applies to the REST protocol it belongs to; gRPC keeps its protobuf
    ({"protocol": "v2-rest,v2-grpc", "encoding": "json,binary"},
     ["v2-rest json", "v2-rest binary", "v2-grpc"], (1,), (50.0,)),
    # compression multiplies every wire
    ({"protocol": "v2-rest,v2-grpc", "compression": "none,gzip"},
     ["v2-rest", "v2-rest gzip", "v2-grpc", "v2-grpc gzip"], (1,), (50.0,)),
    # zstd is left out over gRPC (and noted), kept over REST
    ({"protocol": "tfserving-rest,tfserving-grpc", "compression": "zstd"},
     ["tfserving-rest zstd"], (1,), (50.0,)),
    # rows and columnar belong to TF Serving REST, json and binary to v2 REST
    ({"protocol": "tfserving-rest,v2-rest", "encoding": "rows,columnar,json"},
     ["tfserving-rest rows", "tfserving-rest columnar", "v2-rest json"], (1,), (50.0,)),
    # auto: a capacity search instead of fixed rates
    ({"rps": "auto"}, ["v2-grpc"], (1,), None),
])
def test_axes_parse(given: dict[str, Any], wires: list[str], batch_sizes: tuple[int, ...],
                    rates: tuple[float, ...] | None) -> None:
    parsed = axes(**given)
    assert [w.label for w in parsed.wires] == wires
    assert parsed.batch_sizes == batch_sizes
    assert parsed.rates == rates
    assert parsed.auto == (rates is None)


@pytest.mark.parametrize(("given", "message"), [
    # an empty list says how to write one
    ({"batch_size": ""}, "--batch-size is empty; give one value or a comma-separated list"),
    ({"batch_size": " , "}, "--batch-size is empty"),
    ({"protocol": ","}, "--protocol is empty"),
    # wrong kinds of values name the flag and the value
    ({"batch_size": "5,ten"}, "--batch-size takes whole numbers like 5,10,25,50, got 'ten'"),
    ({"batch_size": "0,5"}, "--batch-size must be ≥ 1, got 0"),
    ({"rps": "20,fast"}, "--rps takes rates like 20,40,80 or auto, got 'fast'"),
    ({"rps": "-5"}, "--rps rates must be finite and > 0"),
    ({"protocol": "http"}, "--protocol takes tfserving-rest, tfserving-grpc, v2-rest, v2-grpc"),
    ({"encoding": "xml", "protocol": "v2-rest"}, "--encoding takes rows, columnar, json, binary"),
    ({"compression": "brotli"}, "brotli"),
    # auto searches the rate: it cannot be mixed with fixed rates
    ({"rps": "auto,20"}, "--rps auto searches for the highest sustainable rate; it cannot be "
                         "mixed with fixed rates"),
    # an encoding that belongs to no swept protocol
    ({"protocol": "v2-grpc", "encoding": "binary"}, "--encoding binary applies to none of gRPC "
                                                    "protocols"),
    ({"protocol": "tfserving-rest", "encoding": "rows,binary"},
     "--encoding binary applies to none of the swept REST protocols (tfserving-rest)"),
    # a REST protocol left with none of the encodings given
    ({"protocol": "tfserving-rest,v2-rest", "encoding": "json"},
     "--encoding json gives tfserving-rest none of its encodings (rows, columnar)"),
    # a compression no swept protocol takes
    ({"protocol": "v2-grpc", "compression": "zstd"}, "no protocol of the sweep takes the "
                                                     "compressions asked for"),
])
def test_axes_refuse_bad_or_contradictory_input(given: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        axes(**given)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_server_axes_need_the_embedded_server() -> None:
    parsed = axes(server={"max_batch_size": "16,64", "batch_timeout_micros": "0",
                          "model_threads": None})
    assert parsed.server == {"max_batch_size": (16, 64), "batch_timeout_micros": (0,)}
    assert parsed.varying() == ("max_batch_size",)
    with pytest.raises(UsageError, match="--max-batch-size sweeps the embedded server's "
                                         "settings; with --target the server is yours"):
        axes(server={"max_batch_size": "16"}, embedded=False)
    with pytest.raises(UsageError, match="--batch-timeout-micros must be ≥ 0"):
        axes(server={"batch_timeout_micros": "-1"})
    with pytest.raises(UsageError, match="--model-threads must be ≥ 1, got 0"):
        axes(server={"model_threads": "0"})


@pytest.mark.parametrize(("settings", "flags"), [
    # a batching axis turns batching on
    ({"max_batch_size": 32}, ["--enable-batching", "--max-batch-size", "32"]),
    ({"batch_timeout_micros": 0, "num_batch_threads": 2},
     ["--enable-batching", "--batch-timeout-micros", "0", "--num-batch-threads", "2"]),
    # thread counts alone do not
    ({"model_threads": 2, "intra_op_threads": 1},
     ["--model-threads", "2", "--intra-op-threads", "1"]),
    # nothing swept: the server's defaults
    ({}, []),
])
def test_server_flags(settings: dict[str, int], flags: list[str]) -> None:
    assert server_flags(settings) == flags


def test_fixed_server_args_may_not_set_a_swept_flag() -> None:
    check_fixed_server_args(["--enable-batching", "--max-enqueued-batches", "4"],
                            ["max_batch_size"])
    with pytest.raises(UsageError, match="--server-args sets --max-batch-size, which the "
                                         "sweep also varies"):
        check_fixed_server_args(["--max-batch-size=8"], ["max_batch_size"])


def test_wire_labels_and_notes() -> None:
    assert Wire("v2-rest", "binary", "gzip").label == "v2-rest binary gzip"
    assert Wire("v2-grpc", None, "none").label == "v2-grpc"
    parsed = axes(protocol="v2-rest,v2-grpc", compression="gzip,zstd")
    assert parsed.notes == ("v2-grpc zstd left out: gRPC takes none, gzip or deflate",)
    assert parsed.describe()["wires"] == ["v2-rest gzip", "v2-rest zstd", "v2-grpc gzip"]


def test_split_list_keeps_order_and_drops_repeats() -> None:
    assert split_list("b,a,b, c", "--x", "a,b") == ["b", "a", "c"]
    assert split_list(["1", "2"], "--x", "1,2") == ["1", "2"]
