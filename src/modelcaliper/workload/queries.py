"""Queries of K candidates from selected rows: whole groups where the data has them.

A ranking query scores K candidates at once. ``plan_queries`` decides which rows make each
query:

* without groups, rows are shuffled (seeded) and cut into queries of K; the rows left over
  (fewer than K) are not used;
* with groups (a ``group_by`` column such as a query or session id) each query comes from one
  group and never mixes two: a group of exactly K rows is a query as it stands, a larger group
  gives K of its rows drawn without replacement, and a smaller one is skipped
  (``small_groups="skip"``) or topped up with rows of the same group drawn again
  (``small_groups="repeat"``).

Rows inside a query keep their data order. The same seed gives the same queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelcaliper.errors import DataError
from modelcaliper.workload.requests import group_codes

__all__ = ["SMALL_GROUP_POLICIES", "QueryPlan", "plan_queries"]

SMALL_GROUP_POLICIES = ("skip", "repeat")
"""What to do with a group smaller than the query size: leave it out, or repeat its rows."""

_QUERY_STREAM = 0x51E7  # keeps query draws apart from the sample's own stream


@dataclass(frozen=True)
class QueryPlan:
    """Row indices of each query, and what was left out on the way."""

    queries: tuple[np.ndarray, ...]
    unused_rows: int
    skipped_groups: int
    subsampled_groups: int
    repeated_groups: int

    def order(self) -> np.ndarray:
        """All query rows back to back: query ``q`` is rows ``q*K`` to ``q*K + K - 1``."""
        return np.concatenate(self.queries) if self.queries else np.empty(0, dtype=np.int64)

    def query_ids(self) -> np.ndarray:
        """The query number of each row of ``order()``."""
        size = self.queries[0].size if self.queries else 0
        return np.repeat(np.arange(len(self.queries), dtype=np.int64), size)


def plan_queries(
    num_rows: int,
    query_size: int,
    *,
    groups: np.ndarray | None = None,
    group_column: str = "group_by",
    seed: int = 0,
    small_groups: str = "skip",
) -> QueryPlan:
    """Queries of exactly ``query_size`` rows (see the module docstring)."""
    if query_size < 1:
        raise DataError(f"query_size must be ≥ 1, got {query_size}")
    if small_groups not in SMALL_GROUP_POLICIES:
        raise DataError(f"small_groups must be one of {', '.join(SMALL_GROUP_POLICIES)}, "
                        f"got {small_groups!r}")
    rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, _QUERY_STREAM])
    if groups is None:
        if num_rows < query_size:
            raise DataError(f"query_size {query_size} needs at least {query_size} rows; the "
                            f"selection has {num_rows}: lower query_size or select more rows")
        count = num_rows // query_size
        shuffled = rng.permutation(num_rows)[: count * query_size].reshape(count, query_size)
        queries = tuple(np.sort(row) for row in shuffled)
        return QueryPlan(queries, num_rows - count * query_size, 0, 0, 0)
    codes = group_codes(np.asarray(groups))
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    out: list[np.ndarray] = []
    unused = skipped = subsampled = repeated = 0
    largest = 0
    for rows in np.split(order, bounds):
        largest = max(largest, rows.size)
        if rows.size == query_size:
            out.append(rows)
        elif rows.size > query_size:
            out.append(np.sort(rng.choice(rows, query_size, replace=False)))
            unused += rows.size - query_size
            subsampled += 1
        elif small_groups == "repeat":
            extra = rng.choice(rows, query_size - rows.size, replace=True)
            out.append(np.sort(np.concatenate([rows, extra])))
            repeated += 1
        else:
            unused += rows.size
            skipped += 1
    if not out:
        raise DataError(
            f"query_size {query_size} is larger than every group of '{group_column}' (the "
            f"largest has {largest} rows); lower query_size to ≤ {largest} or let small groups "
            "repeat rows (small_groups='repeat')")
    return QueryPlan(tuple(out), unused, skipped, subsampled, repeated)
