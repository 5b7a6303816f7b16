"""The axes of a sweep: the values each knob takes, parsed from comma lists and checked once.

Client axes (every target): ``--protocol``, ``--encoding``, ``--compression``,
``--batch-size`` and ``--rps`` (numbers, or ``auto`` for a capacity search). Server axes
(the embedded server only, passed to ``caliper serve-model``): the batching parameters
``--max-batch-size``, ``--batch-timeout-micros``, ``--num-batch-threads`` and the thread
counts ``--model-threads``, ``--intra-op-threads``, ``--inter-op-threads``. A batching axis
turns the server's batching on (``--enable-batching``).

``parse_axes`` refuses, with one line naming the flag: an empty list, a value of the wrong
kind, ``auto`` mixed with fixed rates, an ``--encoding`` that applies to none of the swept
protocols (or a REST protocol left with none of them), a compression no protocol takes,
and server axes without a server to start. Repeated values are kept once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelcaliper.errors import UsageError

__all__ = ["AUTO", "BATCHING_AXES", "CLIENT_AXES", "SERVER_AXES", "Axes", "Wire",
           "check_fixed_server_args", "parse_axes", "server_flags", "split_list"]

AUTO = "auto"
"""The ``--rps`` value that asks for a capacity search instead of fixed rates."""

CLIENT_AXES = ("protocol", "encoding", "compression", "batch_size", "rps")
"""Axes every target can sweep, in the order labels name them."""

SERVER_AXES: dict[str, tuple[str, int]] = {
    "max_batch_size": ("--max-batch-size", 1),
    "batch_timeout_micros": ("--batch-timeout-micros", 0),
    "num_batch_threads": ("--num-batch-threads", 1),
    "model_threads": ("--model-threads", 1),
    "intra_op_threads": ("--intra-op-threads", 1),
    "inter_op_threads": ("--inter-op-threads", 1),
}
"""Server axes: the ``serve-model`` flag each one sets and its smallest value."""

BATCHING_AXES = ("max_batch_size", "batch_timeout_micros", "num_batch_threads")
"""Server axes that need the server's batching turned on."""

_ENCODING_NAMES = ("rows", "columnar", "json", "binary")


def split_list(text: Any, flag: str, example: str) -> list[str]:
    """The non-empty items of a comma-separated list (repeats dropped), or a UsageError."""
    if isinstance(text, (list, tuple)):
        raw = [str(t) for t in text]
    else:
        raw = re.split(r"[,\s]+", str(text if text is not None else "").strip())
    items = [item.strip() for item in raw if item.strip()]
    if not items:
        raise UsageError(f"{flag} is empty; give one value or a comma-separated list, "
                         f"e.g. {example}")
    return list(dict.fromkeys(items))


def _ints(text: Any, flag: str, minimum: int, example: str) -> tuple[int, ...]:
    values = []
    for item in split_list(text, flag, example):
        try:
            value = int(item.replace("_", ""))
        except ValueError:
            raise UsageError(f"{flag} takes whole numbers like {example}, got {item!r}") from None
        if value < minimum:
            raise UsageError(f"{flag} must be ≥ {minimum}, got {value}")
        values.append(value)
    return tuple(dict.fromkeys(values))


def _rates(text: Any) -> tuple[float, ...] | None:
    """Fixed rates, or None for ``auto``."""
    items = split_list(text, "--rps", "20,40,80 or auto")
    if AUTO in (item.lower() for item in items):
        if len(items) > 1:
            raise UsageError("--rps auto searches for the highest sustainable rate; it cannot "
                             f"be mixed with fixed rates (got {','.join(items)})")
        return None
    rates = []
    for item in items:
        try:
            rate = float(item)
        except ValueError:
            raise UsageError(f"--rps takes rates like 20,40,80 or auto, got {item!r}") from None
        if not math.isfinite(rate) or rate <= 0:
            raise UsageError(f"--rps rates must be finite and > 0, got {item!r}")
        rates.append(rate)
    return tuple(dict.fromkeys(rates))


@dataclass(frozen=True)
class Wire:
    """How requests travel: protocol, ``--encoding`` choice (None: the only one), compression."""

    protocol: str
    encoding: str | None
    compression: str

    @property
    def label(self) -> str:
        """``v2-rest binary gzip``, ``v2-grpc``: protocol, encoding and compression when set."""
        parts = [self.protocol, self.encoding or "", "" if self.compression == "none"
                 else self.compression]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class Axes:
    """Every axis's values, validated; ``rates`` is None for ``--rps auto``."""

    wires: tuple[Wire, ...]
    batch_sizes: tuple[int, ...]
    rates: tuple[float, ...] | None
    server: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    """Combinations left out, and why (e.g. zstd over gRPC)."""
    protocols: tuple[str, ...] = ()
    encodings: tuple[str, ...] = ()
    compressions: tuple[str, ...] = ()

    @property
    def auto(self) -> bool:
        """Whether the sweep searches each configuration's capacity (``--rps auto``)."""
        return self.rates is None

    def varying(self) -> tuple[str, ...]:
        """The axes with more than one value (what labels need to name)."""
        counts = {"protocol": len(self.protocols), "encoding": len(self.encodings),
                  "compression": len(self.compressions), "batch_size": len(self.batch_sizes),
                  "rps": len(self.rates) if self.rates is not None else 1,
                  **{name: len(values) for name, values in self.server.items()}}
        return tuple(name for name, count in counts.items() if count > 1)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record of the axes as given (``rps``: a list or ``"auto"``)."""
        return {"protocol": list(self.protocols), "encoding": list(self.encodings),
                "compression": list(self.compressions), "batch_size": list(self.batch_sizes),
                "rps": AUTO if self.rates is None else list(self.rates),
                "server": {name: list(values) for name, values in self.server.items()},
                "wires": [w.label for w in self.wires], "notes": list(self.notes)}


def _wires(protocols: Sequence[str], encodings: Sequence[str] | None,
           compressions: Sequence[str]) -> tuple[tuple[Wire, ...], tuple[str, ...]]:
    from modelcaliper.config import resolve_encoding

    def applies(protocol: str, encoding: str) -> bool:
        try:
            resolve_encoding(protocol, encoding)
        except UsageError:
            return False
        return True

    notes: list[str] = []
    per_protocol: dict[str, list[str | None]] = {}
    for protocol in protocols:
        rest = protocol.endswith("-rest")
        if not encodings or not rest:
            per_protocol[protocol] = [None]
            continue
        chosen: list[str | None] = [e for e in encodings if applies(protocol, e)]
        if not chosen:
            raise UsageError(f"--encoding {','.join(encodings)} gives {protocol} none of its "
                             f"encodings ({_own_encodings(protocol)}); add one or drop "
                             f"{protocol}")
        per_protocol[protocol] = chosen
    for encoding in encodings or ():
        if not any(applies(p, encoding) for p in protocols if p.endswith("-rest")):
            rest_protocols = [p for p in protocols if p.endswith("-rest")]
            where = (f"the swept REST protocols ({', '.join(rest_protocols)})" if rest_protocols
                     else "gRPC protocols (protobuf only)")
            raise UsageError(f"--encoding {encoding} applies to none of {where}; drop it or "
                             "add the protocol it belongs to")
    wires = []
    for protocol, chosen in per_protocol.items():
        for choice in chosen:
            for compression in compressions:
                if protocol.endswith("-grpc") and compression == "zstd":
                    note = f"{protocol} zstd left out: gRPC takes none, gzip or deflate"
                    if note not in notes:
                        notes.append(note)
                    continue
                wires.append(Wire(protocol, choice, compression))
    if not wires:
        raise UsageError("no protocol of the sweep takes the compressions asked for: "
                         f"{'; '.join(notes)}")
    return tuple(wires), tuple(notes)


def _own_encodings(protocol: str) -> str:
    from modelcaliper.config import resolve_encoding

    own = []
    for name in _ENCODING_NAMES:
        try:
            resolve_encoding(protocol, name)
        except UsageError:
            continue
        own.append(name)
    return ", ".join(own)


def parse_axes(*, protocol: Any, encoding: Any, compression: Any, batch_size: Any, rps: Any,
               server: Mapping[str, Any] | None = None, embedded: bool = True,
               default_protocol: str = "v2-grpc") -> Axes:
    """Every axis from its flag text (None: the flag's default); UsageError for bad input."""
    from modelcaliper.config import PROTOCOLS
    from modelcaliper.wire.compression import parse_compression

    protocols = tuple(split_list(protocol, "--protocol", "v2-grpc,v2-rest")
                      if protocol is not None else [default_protocol])
    for name in protocols:
        if name not in PROTOCOLS:
            raise UsageError(f"--protocol takes {', '.join(PROTOCOLS)}, got {name!r}")
    encodings = None
    if encoding is not None:
        encodings = [e.lower() for e in split_list(encoding, "--encoding", "json,binary")]
        for name in encodings:
            if name not in _ENCODING_NAMES:
                raise UsageError(f"--encoding takes {', '.join(_ENCODING_NAMES)} (REST "
                                 f"protocols), got {name!r}")
    compressions = tuple(dict.fromkeys(
        parse_compression(c) for c in split_list(compression if compression is not None
                                                 else "none", "--compression", "none,gzip")))
    wires, notes = _wires(protocols, encodings, compressions)
    batch_sizes = _ints(batch_size if batch_size is not None else "1", "--batch-size", 1,
                        "5,10,25,50")
    rates = _rates(rps) if rps is not None else (50.0,)
    server_values: dict[str, tuple[int, ...]] = {}
    for name, text in (server or {}).items():
        if text is None:
            continue
        if name not in SERVER_AXES:
            raise UsageError(f"unknown server axis {name!r}; choose from "
                             f"{', '.join(SERVER_AXES)}")
        flag, minimum = SERVER_AXES[name]
        server_values[name] = _ints(text, flag, minimum, "1,2,4")
    if server_values and not embedded:
        flag = SERVER_AXES[next(iter(server_values))][0]
        raise UsageError(f"{flag} sweeps the embedded server's settings; with --target the "
                         "server is yours: restart it with each setting and sweep each")
    return Axes(wires, batch_sizes, rates, server_values, notes, protocols,
                tuple(encodings or ()), compressions)


def server_flags(settings: Mapping[str, int]) -> list[str]:
    """``serve-model`` flags for one server configuration (batching turned on when needed)."""
    flags: list[str] = []
    if any(name in settings for name in BATCHING_AXES):
        flags.append("--enable-batching")
    for name, value in settings.items():
        flags += [SERVER_AXES[name][0], str(value)]
    return flags


def check_fixed_server_args(server_args: Sequence[str], swept: Sequence[str]) -> None:
    """Refuse ``--server-args`` that set a flag a server axis also sweeps."""
    flags = {str(arg).split("=", 1)[0] for arg in server_args}
    for name in swept:
        flag = SERVER_AXES[name][0]
        if flag in flags:
            raise UsageError(f"--server-args sets {flag}, which the sweep also varies; drop it "
                             "from --server-args")
