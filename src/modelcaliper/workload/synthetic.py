"""Synthetic rows for a signature: seeded, shaped like real ranking features, grouped in queries.

Each input's values come from a generator chosen by its dtype, tunable per input through the
signature file (``TensorSpec.options["generator"]``)::

    {"name": "country", "dtype": "string", "shape": [-1],
     "generator": {"kind": "categorical", "cardinality": 40, "length": [2, 2], "per_query": true}}

Options: ``kind`` (``normal``, ``lognormal``, ``uniform``, ``categorical``, ``constant``),
``mean``/``std`` (normal, lognormal), ``low``/``high`` (uniform), ``value`` (constant),
``cardinality`` and ``length`` (categorical; ``length`` is the word length range of strings),
``decimals`` (round numbers to this many decimals, as stored prices and counts are),
``zero_fraction`` (share of elements set to zero or the empty string), ``per_query`` (one
value per query group, repeated for every row of it) and ``dim`` (size of inner ``-1``
dimensions, default 1).

Rows come in query groups of ``query_size`` rows, numbered in the ``query_id`` column. Every
input is drawn from its own stream, seeded from the run seed and the input's name, so adding
an input to a signature leaves the values of the others unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelcaliper.errors import DataError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType

__all__ = ["KINDS", "QUERY_COLUMN", "generate_tensor", "signature_from_server",
           "synthetic_columns"]

QUERY_COLUMN = "query_id"
"""Name of the column that numbers the query group of each synthetic row."""

KINDS = ("normal", "lognormal", "uniform", "categorical", "constant")
_OPTIONS = {
    "kind",
    "mean",
    "std",
    "low",
    "high",
    "value",
    "cardinality",
    "length",
    "decimals",
    "zero_fraction",
    "per_query",
    "dim",
}
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def synthetic_columns(
    signature: Signature,
    num_rows: int,
    *,
    seed: int = 0,
    query_size: int = 100,
    query_column: str = QUERY_COLUMN,
) -> dict[str, np.ndarray]:
    """``num_rows`` synthetic rows for every input of ``signature`` plus the query-id column."""
    if num_rows < 1:
        raise DataError(f"synthetic data needs at least 1 row, got {num_rows}")
    if query_size < 1:
        raise DataError(f"synthetic query groups need at least 1 row, got {query_size}")
    names = {spec.name for spec in signature.inputs}
    if query_column in names:
        raise DataError(
            f"input '{query_column}' clashes with the synthetic query-id column; "
            "pass another query column name"
        )
    query_ids = np.arange(num_rows, dtype=np.int64) // query_size
    columns: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode("utf-8"))])
        columns[spec.name] = generate_tensor(spec, num_rows, rng, query_ids=query_ids)
    columns[query_column] = query_ids
    return columns


def signature_from_server(url: str, protocol: str, model: str, *,
                          timeout_s: float = 5.0) -> Signature:
    """The signature ``model`` has on a running server, read from its metadata endpoint.

    ``protocol`` is ``tfserving-rest``, ``v2-rest`` (HTTP GET of the model's metadata),
    ``tfserving-grpc`` or ``v2-grpc`` (the metadata RPC); an unreachable server or a model it
    does not serve is a one-line ``TargetError``. The inputs' generator options can then be
    set on the returned signature as on a signature file's.
    """
    # The load engine's start-up probe already speaks all four metadata dialects.
    from modelcaliper.load.health import probe_target

    return probe_target(url, protocol, model, timeout_s=timeout_s)


def generate_tensor(
    spec: TensorSpec,
    num_rows: int,
    rng: np.random.Generator,
    *,
    query_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Values for ``spec`` with ``num_rows`` rows, drawn with ``rng`` per its generator options."""
    options = _options(spec)
    dim = int(options.get("dim", 1))
    if dim < 1:
        raise DataError(f"input '{spec.name}': generator dim must be ≥ 1, got {dim}")
    row_shape = tuple(dim if d == -1 else d for d in spec.row_shape())
    per_query = bool(options.get("per_query", False)) and query_ids is not None
    if per_query:
        assert query_ids is not None
        # Draw one row per query, then repeat it for the query's rows: the values are shared
        # context, the same for every candidate of one query.
        groups, inverse = np.unique(query_ids, return_inverse=True)
        draws = _draw(spec, options, (groups.size, *row_shape), rng)
        return draws[inverse.reshape(-1)]
    return _draw(spec, options, (num_rows, *row_shape), rng)


def _options(spec: TensorSpec) -> dict[str, Any]:
    raw = spec.options.get("generator", {})
    if not isinstance(raw, Mapping):
        raise DataError(f"input '{spec.name}': 'generator' must be an object, got {raw!r}")
    unknown = sorted(set(raw) - _OPTIONS)
    if unknown:
        raise DataError(
            f"input '{spec.name}': unknown generator option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_OPTIONS))}"
        )
    kind = raw.get("kind")
    if kind is not None and kind not in KINDS:
        raise DataError(
            f"input '{spec.name}': generator kind '{kind}' is not one of {', '.join(KINDS)}"
        )
    if spec.dtype is DType.BYTES and kind in ("normal", "lognormal", "uniform"):
        raise DataError(
            f"input '{spec.name}': generator kind '{kind}' needs a numeric input, it is BYTES"
        )
    zero_fraction = float(raw.get("zero_fraction", 0.0))
    if not 0.0 <= zero_fraction <= 1.0:
        raise DataError(
            f"input '{spec.name}': zero_fraction must be in [0, 1], got {zero_fraction}"
        )
    return dict(raw)


def _draw(
    spec: TensorSpec, options: Mapping[str, Any], shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """Draw an array of ``shape`` for ``spec``: the generator, then the zero fraction."""
    dtype = spec.dtype
    kind = options.get("kind") or _default_kind(dtype)
    if kind == "categorical":
        values = _categorical(spec, options, shape, rng)
    elif kind == "constant":
        values = _constant(spec, options, shape)
    elif dtype is DType.BOOL:
        values = rng.random(shape) < 0.5
    elif kind == "normal" and "mean" not in options and "std" not in options and dtype.is_float:
        values = _normal_mixture(shape, rng)
    else:
        values = _numeric(kind, options, shape, rng)
    if "decimals" in options and values.dtype.kind == "f":
        values = np.round(values, int(options["decimals"]))
    values = _cast(spec, values)
    zero_fraction = float(options.get("zero_fraction", 0.0))
    if zero_fraction > 0.0:
        values[rng.random(shape) < zero_fraction] = b"" if dtype is DType.BYTES else 0
    return values


def _default_kind(dtype: DType) -> str:
    if dtype is DType.BYTES:
        return "categorical"
    if dtype.is_float or dtype is DType.BOOL:
        return "normal"
    return "poisson"


def _normal_mixture(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Two normal components with a per-input mean and scale, like a feature with two regimes."""
    centres = rng.normal(0.0, 2.0, size=2)
    scales = rng.uniform(0.2, 1.5, size=2)
    pick = rng.random(shape) < rng.uniform(0.2, 0.8)
    return np.where(
        pick, rng.normal(centres[0], scales[0], shape), rng.normal(centres[1], scales[1], shape)
    )


def _numeric(
    kind: str, options: Mapping[str, Any], shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    if kind == "normal":
        return rng.normal(float(options.get("mean", 0.0)), float(options.get("std", 1.0)), shape)
    if kind == "lognormal":
        return rng.lognormal(float(options.get("mean", 0.0)), float(options.get("std", 1.0)), shape)
    if kind == "uniform":
        return rng.uniform(float(options.get("low", 0.0)), float(options.get("high", 1.0)), shape)
    # Integers by default: small non-negative counts.
    return rng.poisson(3.0, shape)


def _categorical(
    spec: TensorSpec, options: Mapping[str, Any], shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    cardinality = int(options.get("cardinality", 100))
    if cardinality < 1:
        raise DataError(f"input '{spec.name}': cardinality must be ≥ 1, got {cardinality}")
    if spec.dtype is DType.BYTES:
        low, high = _length_range(spec, options.get("length", [4, 16]))
        vocabulary = _vocabulary(cardinality, low, high, rng)
    elif spec.dtype.is_float:
        vocabulary = np.round(rng.normal(0.0, 1.0, cardinality), 3)
    else:
        vocabulary = np.arange(cardinality)
    # Zipf-like weights: a few values are common and most are rare, as in real categories.
    weights = 1.0 / np.arange(1, cardinality + 1)
    return vocabulary[rng.choice(cardinality, size=shape, p=weights / weights.sum())]


def _length_range(spec: TensorSpec, length: Any) -> tuple[int, int]:
    if isinstance(length, int):
        length = [length, length]
    if (
        not isinstance(length, (list, tuple))
        or len(length) != 2
        or not all(isinstance(v, int) for v in length)
        or not 0 <= length[0] <= length[1]
    ):
        raise DataError(
            f"input '{spec.name}': length must be [min, max] with 0 ≤ min ≤ max, got {length!r}"
        )
    return int(length[0]), int(length[1])


def _vocabulary(cardinality: int, low: int, high: int, rng: np.random.Generator) -> np.ndarray:
    """``cardinality`` distinct lower-case words of ``low``..``high`` letters, cycled if too few."""
    words: dict[bytes, None] = {}
    attempts = 0
    while len(words) < cardinality and attempts < cardinality * 20:
        attempts += 1
        size = int(rng.integers(low, high + 1))
        words.setdefault(_LETTERS[rng.integers(0, 26, size)].tobytes(), None)
    out = np.empty(len(words), dtype=object)
    out[:] = list(words)
    if out.size < cardinality:
        # Short words run out of distinct spellings; cycle rather than fail.
        out = out[np.arange(cardinality) % out.size]
    return out


def _constant(spec: TensorSpec, options: Mapping[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    value = options.get("value", "value" if spec.dtype is DType.BYTES else 0)
    if spec.dtype is DType.BYTES:
        out = np.empty(shape, dtype=object)
        out.fill(value if isinstance(value, bytes) else str(value).encode("utf-8"))
        return out
    return np.full(shape, value)


def _cast(spec: TensorSpec, values: np.ndarray) -> np.ndarray:
    """``values`` as the input's dtype; integers are clipped into the dtype's range first."""
    dtype = spec.dtype
    if dtype is DType.BYTES:
        if values.dtype != object:
            raise DataError(
                f"input '{spec.name}': a BYTES input needs a categorical or constant generator"
            )
        return values
    target = dtype.numpy
    if target.kind in "iu" and values.dtype.kind == "f":
        values = np.rint(values)
    if target.kind in "iu":
        info = np.iinfo(target)
        values = np.clip(values, info.min, info.max)
    return np.ascontiguousarray(values, dtype=target)
