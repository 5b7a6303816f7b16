"""The demo's search-ranking data: queries of candidates with realistic feature distributions.

Every row is one candidate of one query, stored the way the demo model takes it, so that
``caliper run --data`` maps columns to inputs by name:

    query_id      int64                       consecutive rows share it (a query's candidates)
    numeric       fixed_size_list<float32>    ≈260 candidate features (see below)
    categorical   fixed_size_list<string>     ≈30 categorical features, 3 to 20 characters
    context       fixed_size_list<float32>    ≈10 query-context features, equal within a query
    label         float32                     1 = clicked, from a logistic of a few features

The numeric features mimic a ranking feature store: dense similarity scores; sparse counts
(30-90 % zeros); star ratings in 0.5 steps (missing as 0); prices with two decimals;
heavy-tailed durations and popularities (lognormal, Pareto); and ratios, some sparse.
Categorical values follow Zipf laws over vocabularies of 4 to 50 000 values. The layout (which
column is which kind, with which parameters) is a pure function of ``FeatureLayout``; the
rows are a pure function of the layout and the data seed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modelcaliper.errors import UsageError

__all__ = [
    "CategoricalColumn",
    "DataReport",
    "FeatureLayout",
    "NumericColumn",
    "generate_chunks",
    "write_dataset",
]

NUMERIC_KINDS: tuple[tuple[str, int], ...] = (
    ("dense", 50),      # similarity scores in [-1, 1]
    ("count", 80),      # sparse event counts
    ("rating", 20),     # star ratings in 0.5 steps, 0 when unrated
    ("price", 20),      # money, two decimals
    ("lognormal", 40),  # heavy-tailed durations and popularities
    ("pareto", 20),     # heavier tails still
    ("ratio", 30),      # rates in [0, 1], half of them sparse
)
"""Kinds of numeric features and their share of the default 260 columns."""

CONTEXT_NAMES = ("query_tokens", "query_chars", "hour", "day_of_week", "user_age_days",
                 "user_orders_90d", "user_sessions_30d", "user_ctr_30d", "result_count",
                 "device_mobile")
"""Names of the query-context features, in column order (the first ``context`` are used)."""

_LAYOUT_SEED = 20_240_611  # the layout never depends on the data seed
_MAX_CARDINALITY = 50_000
_ROWS_PER_GROUP = 16_384
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


@dataclass(frozen=True)
class NumericColumn:
    """One numeric feature: its kind, its share of zeros and the transform the model applies."""

    name: str
    kind: str
    zero_fraction: float
    location: float
    spread: float
    clip_low: float
    clip_high: float
    log: bool
    scale: float


@dataclass(frozen=True)
class CategoricalColumn:
    """One categorical feature: vocabulary size, Zipf exponent, and how the model encodes it."""

    name: str
    cardinality: int
    zipf_s: float
    encoding: str  # "onehot" (small vocabulary), "lookup" (embedding) or "hash" (embedding)
    min_chars: int
    max_chars: int


def _split_counts(total: int, shares: tuple[tuple[str, int], ...]) -> list[tuple[str, int]]:
    """``total`` columns split over kinds in proportion to their shares, each kind ≥ 1 if room."""
    weights = np.array([share for _, share in shares], dtype=float)
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(int)
    if total >= len(shares):
        counts = np.maximum(counts, 1)
    while counts.sum() > total:
        counts[int(np.argmax(counts))] -= 1
    while counts.sum() < total:
        counts[int(np.argmax(exact - counts))] += 1
    return [(kind, int(n)) for (kind, _), n in zip(shares, counts, strict=True)]


@dataclass(frozen=True)
class FeatureLayout:
    """Sizes of the three feature groups; everything else about the columns derives from them."""

    numeric: int = 260
    categorical: int = 30
    context: int = 10
    discretized: int = 8
    """Heavy-tailed numeric columns the model also bucketizes (Discretization)."""

    def __post_init__(self) -> None:
        for name, minimum in (("numeric", 7), ("categorical", 3), ("context", 2),
                              ("discretized", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < minimum:
                raise UsageError(f"the demo layout needs {name} ≥ {minimum}, got {value!r}")
        if self.context > len(CONTEXT_NAMES):
            raise UsageError(f"the demo layout has at most {len(CONTEXT_NAMES)} context "
                             f"features, got {self.context}")
        if self.discretized > self.numeric:
            raise UsageError(f"cannot bucketize {self.discretized} of {self.numeric} columns")

    @cached_property
    def numeric_columns(self) -> tuple[NumericColumn, ...]:
        """Every numeric column, grouped by kind in ``NUMERIC_KINDS`` order."""
        rng = np.random.default_rng(_LAYOUT_SEED)
        columns: list[NumericColumn] = []
        for kind, count in _split_counts(self.numeric, NUMERIC_KINDS):
            for i in range(count):
                columns.append(_numeric_column(f"{kind}_{i:03d}", kind, i, rng))
        return tuple(columns)

    @cached_property
    def categorical_columns(self) -> tuple[CategoricalColumn, ...]:
        """Every categorical column; cardinalities spread log-uniformly from 4 to 50 000."""
        rng = np.random.default_rng(_LAYOUT_SEED + 1)
        cards = np.geomspace(4, _MAX_CARDINALITY, self.categorical).round().astype(int)
        rng.shuffle(cards)
        columns = []
        for i, card in enumerate(cards):
            encoding = "onehot" if card <= 16 else "lookup" if card <= 2_000 else "hash"
            low = int(rng.integers(3, 9))
            columns.append(CategoricalColumn(f"cat_{i:02d}", int(card),
                                             float(rng.uniform(1.05, 1.6)), encoding,
                                             low, int(rng.integers(max(low, 6), 21))))
        return tuple(columns)

    @property
    def context_names(self) -> tuple[str, ...]:
        """Names of the context features in column order."""
        return CONTEXT_NAMES[: self.context]

    @cached_property
    def discretized_indices(self) -> tuple[int, ...]:
        """Numeric columns that are bucketized too: the first lognormal and Pareto columns."""
        tails = [i for i, c in enumerate(self.numeric_columns) if c.kind in ("lognormal",
                                                                              "pareto")]
        others = [i for i, c in enumerate(self.numeric_columns) if c.kind == "count"]
        picked = (tails[::2] + tails[1::2] + others)[: self.discretized]
        return tuple(sorted(picked))

    @cached_property
    def vocabularies(self) -> tuple[np.ndarray, ...]:
        """Each categorical column's vocabulary (object arrays of str), most frequent first."""
        rng = np.random.default_rng(_LAYOUT_SEED + 2)
        return tuple(_vocabulary(c, rng) for c in self.categorical_columns)

    def describe(self) -> dict[str, object]:
        """A JSON-ready description of every column (stored in the Parquet file's metadata)."""
        return {
            "numeric": [{"name": c.name, "kind": c.kind, "zero_fraction": c.zero_fraction}
                        for c in self.numeric_columns],
            "categorical": [{"name": c.name, "cardinality": c.cardinality, "zipf_s": c.zipf_s,
                             "encoding": c.encoding} for c in self.categorical_columns],
            "context": list(self.context_names),
            "discretized": list(self.discretized_indices),
        }


def _numeric_column(name: str, kind: str, i: int, rng: np.random.Generator) -> NumericColumn:
    """Distribution parameters and model transform of one numeric column of ``kind``."""
    zero = 0.0
    if kind == "dense":
        return NumericColumn(name, kind, 0.0, float(rng.uniform(-0.3, 0.3)),
                             float(rng.uniform(0.2, 0.6)), -1.0, 1.0, False, 1.0)
    if kind == "count":
        zero = float(rng.uniform(0.3, 0.9))
        return NumericColumn(name, kind, zero, float(rng.uniform(0.5, 3.0)),
                             float(rng.uniform(0.6, 1.6)), 0.0, 1e5, True, 1.0)
    if kind == "rating":
        zero = float(rng.uniform(0.3, 0.7))
        return NumericColumn(name, kind, zero, float(rng.uniform(3.2, 4.4)),
                             float(rng.uniform(0.5, 1.0)), 0.0, 5.0, False, 0.2)
    if kind == "price":
        return NumericColumn(name, kind, 0.0, float(rng.uniform(1.5, 5.0)),
                             float(rng.uniform(0.5, 1.3)), 0.0, 1e5, True, 1.0)
    if kind == "lognormal":
        return NumericColumn(name, kind, 0.0, float(rng.uniform(0.0, 6.0)),
                             float(rng.uniform(0.8, 2.0)), 0.0, 1e6, True, 1.0)
    if kind == "pareto":
        return NumericColumn(name, kind, 0.0, float(rng.uniform(1.1, 2.5)),
                             float(rng.uniform(1.0, 50.0)), 0.0, 1e7, True, 1.0)
    if kind == "ratio":
        zero = float(rng.uniform(0.3, 0.9)) if i % 2 == 0 else 0.0
        return NumericColumn(name, kind, zero, float(rng.uniform(0.5, 3.0)),
                             float(rng.uniform(2.0, 30.0)), 0.0, 1.0, False, 1.0)
    raise ValueError(f"unknown numeric kind {kind!r}")


def _vocabulary(column: CategoricalColumn, rng: np.random.Generator) -> np.ndarray:
    """``cardinality`` distinct lowercase strings of ``min_chars`` to ``max_chars`` characters."""
    n = column.cardinality
    lengths = rng.integers(column.min_chars, column.max_chars + 1, size=n)
    letters = _LETTERS[rng.integers(0, 26, size=(n, column.max_chars))]
    words: list[str] = []
    seen: set[str] = set()
    for row, length in zip(letters, lengths, strict=True):
        word = row[:length].tobytes().decode()
        while word in seen:  # short words collide: draw a longer one instead
            length = int(rng.integers(max(column.min_chars, 6), column.max_chars + 1))
            word = _LETTERS[rng.integers(0, 26, size=length)].tobytes().decode()
        seen.add(word)
        words.append(word)
    return np.array(words, dtype=object)


def _zipf_indices(n: int, s: float, size: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Indices in [0, n) with P(k) ∝ 1 / (k + 1)^s (inverse-CDF sampling)."""
    cdf = np.cumsum(1.0 / np.arange(1, n + 1, dtype=float) ** s)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), n - 1)


def _numeric_values(col: NumericColumn, rows: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` values of one numeric column, zeros included."""
    kind = col.kind
    if kind == "dense":
        values = np.round(np.tanh(rng.normal(col.location, col.spread, rows)), 4)
    elif kind == "count":
        values = np.maximum(1.0, np.floor(rng.lognormal(col.location, col.spread, rows)))
    elif kind == "rating":
        values = np.clip(np.round(rng.normal(col.location, col.spread, rows) * 2) / 2, 0.5, 5.0)
    elif kind == "price":
        values = np.round(rng.lognormal(col.location, col.spread, rows), 2)
        values = np.maximum(values, 0.01)
    elif kind == "lognormal":
        values = np.round(rng.lognormal(col.location, col.spread, rows), 1)
    elif kind == "pareto":
        values = np.round((rng.pareto(col.location, rows) + 1.0) * col.spread, 2)
    else:  # ratio: a beta-distributed rate
        values = np.round(rng.beta(col.location, col.spread, rows), 4)
    if col.zero_fraction:
        values[rng.random(rows) < col.zero_fraction] = 0.0
    return values


def _context_values(names: tuple[str, ...], queries: int,
                    rng: np.random.Generator) -> np.ndarray:
    """One row of context features per query."""
    out = np.empty((queries, len(names)), dtype=np.float64)
    draws = {
        "query_tokens": lambda: np.minimum(1 + rng.poisson(2.2, queries), 20),
        "query_chars": lambda: np.round(rng.lognormal(3.0, 0.45, queries)),
        "hour": lambda: rng.integers(0, 24, queries),
        "day_of_week": lambda: rng.integers(0, 7, queries),
        "user_age_days": lambda: np.round(rng.lognormal(5.5, 1.2, queries)),
        "user_orders_90d": lambda: np.where(rng.random(queries) < 0.4, 0,
                                            np.floor(rng.lognormal(1.0, 1.0, queries)) + 1),
        "user_sessions_30d": lambda: np.floor(rng.lognormal(2.0, 1.0, queries)) + 1,
        "user_ctr_30d": lambda: np.round(rng.beta(1.2, 12.0, queries), 4),
        "result_count": lambda: np.round(rng.lognormal(7.0, 2.0, queries)),
        "device_mobile": lambda: (rng.random(queries) < 0.62).astype(float),
    }
    for j, name in enumerate(names):
        out[:, j] = draws[name]()
    return out


@dataclass
class _Signal:
    """The hidden click model: a logistic of a few features, fixed by the layout."""

    layout: FeatureLayout
    pieces: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        kinds = [c.kind for c in self.layout.numeric_columns]
        first = {kind: kinds.index(kind) for kind in dict.fromkeys(kinds)}
        self.pieces = [(first["count"], 0.9), (first["price"], -0.7), (first["rating"], 0.8),
                       (first["lognormal"], 0.5), (first["dense"], 1.2)]

    def logits(self, numeric: np.ndarray, cat_index: np.ndarray, context: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
        """Click logits: features, a popular-category bonus, a context interaction, noise."""
        logit = np.full(len(numeric), -2.6)
        for column, weight in self.pieces:
            x = np.log1p(np.maximum(numeric[:, column], 0.0))
            std = x.std() or 1.0
            logit += weight * (x - x.mean()) / std
        logit += 0.8 * (cat_index[:, 0] < 3)
        first_dense = self.pieces[-1][0]
        logit += 0.6 * numeric[:, first_dense] * (context[:, 0] - 3.0) / 2.0
        return logit + rng.normal(0.0, 0.8, len(numeric))


def generate_chunks(layout: FeatureLayout, queries: int, candidates: int, *, seed: int = 0,
                    rows_per_chunk: int = _ROWS_PER_GROUP) -> Iterator[pa.RecordBatch]:
    """The data set as record batches of whole queries (at least one query per batch)."""
    if queries < 1 or candidates < 1:
        raise UsageError(f"the demo data needs ≥ 1 query of ≥ 1 candidate, got {queries} "
                         f"queries of {candidates}")
    rng = np.random.default_rng(seed)
    signal = _Signal(layout)
    vocab_sizes = [len(v) for v in layout.vocabularies]
    offsets = np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]])
    all_words = pa.array(np.concatenate(layout.vocabularies), type=pa.string())
    per_chunk = max(1, rows_per_chunk // candidates)
    for first in range(0, queries, per_chunk):
        q = min(per_chunk, queries - first)
        rows = q * candidates
        numeric = np.empty((rows, layout.numeric), dtype=np.float64)
        for j, col in enumerate(layout.numeric_columns):
            numeric[:, j] = _numeric_values(col, rows, rng)
        cat_index = np.empty((rows, layout.categorical), dtype=np.int64)
        for j, cat in enumerate(layout.categorical_columns):
            cat_index[:, j] = _zipf_indices(cat.cardinality, cat.zipf_s, (rows,), rng)
        context = np.repeat(_context_values(layout.context_names, q, rng), candidates, axis=0)
        logits = signal.logits(numeric, cat_index, context, rng)
        label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        words = all_words.take(pa.array((cat_index + offsets).ravel()))
        yield pa.RecordBatch.from_arrays([
            pa.array(np.repeat(np.arange(first, first + q, dtype=np.int64), candidates)),
            pa.FixedSizeListArray.from_arrays(
                pa.array(numeric.astype(np.float32).ravel()), layout.numeric),
            pa.FixedSizeListArray.from_arrays(words, layout.categorical),
            pa.FixedSizeListArray.from_arrays(
                pa.array(context.astype(np.float32).ravel()), layout.context),
            pa.array(label),
        ], names=["query_id", "numeric", "categorical", "context", "label"])


@dataclass(frozen=True)
class DataReport:
    """What ``write_dataset`` wrote: where, how many rows, the click rate, how long it took."""

    path: Path
    rows: int
    queries: int
    positive_rate: float
    build_s: float


def write_dataset(path: str | Path, layout: FeatureLayout | None = None, *, queries: int = 60,
                  candidates: int = 1000, seed: int = 0,
                  rows_per_group: int = _ROWS_PER_GROUP) -> DataReport:
    """Write the data set as Parquet (zstd; row groups of whole queries, ≈``rows_per_group``)."""
    layout = layout or FeatureLayout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    started_s = time.perf_counter()
    partial = out.with_name(out.name + ".partial")
    rows = positives = 0
    writer: pq.ParquetWriter | None = None
    try:
        for batch in generate_chunks(layout, queries, candidates, seed=seed,
                                     rows_per_chunk=rows_per_group):
            if writer is None:
                meta = {b"modelcaliper.demo.layout": json.dumps(layout.describe()).encode()}
                writer = pq.ParquetWriter(partial, batch.schema.with_metadata(meta),
                                          compression="zstd")
            writer.write_batch(batch, row_group_size=batch.num_rows)
            rows += batch.num_rows
            positives += int(np.asarray(batch.column("label")).sum())
    finally:
        if writer is not None:
            writer.close()
    partial.replace(out)  # readers never see a half-written file
    rate = positives / rows if rows else math.nan
    return DataReport(out, rows, queries, rate, time.perf_counter() - started_s)
