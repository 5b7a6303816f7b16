"""Which rows of a dataset become the workload: filter, sample, keep groups whole, stratify.

Every row has a fixed position (its row number in scan order) and a 64-bit priority hashed
from the seed and either its position or, with ``group_by``, its group's value. A sample of N
rows is the N rows of lowest priority; with groups it is whole groups in priority order until
they hold at least N rows; ``fraction`` F keeps the rows (or groups) whose priority falls in
the lowest F of the range. Because priorities depend on nothing but the seed and the row (or
group), the result is the same however the data is split into files, row groups or batches,
and a streamed pass needs to hold only the current best candidates, never the dataset.
``stratify`` makes each value of a column hold its proportional share of the sample (counted
in a first pass over that column).

Parquet sources are read twice but cheaply: first only the columns the filter, groups and
strata need (row groups that the column statistics rule out are skipped — the filter is
pushed down), then only the row groups holding chosen rows, with only the wanted columns.
Other formats are streamed once (twice with ``stratify``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from modelcaliper.errors import DataError
from modelcaliper.workload.datasets import RowGroup, Source, open_source, to_numpy_columns
from modelcaliper.workload.filters import Filter, parse_where
from modelcaliper.workload.queries import SMALL_GROUP_POLICIES, plan_queries
from modelcaliper.workload.sampling import (
    ALL_PRIORITIES,
    Keeper,
    mix,
    row_priorities,
    seed_key,
    value_hashes,
)

__all__ = ["SelectedRows", "Selection", "select_rows"]

_POSITION_CHUNK = 1 << 22


@dataclass(frozen=True)
class Selection:
    """What to select: ``sample`` rows or a ``fraction``, ``where``, groups, strata, queries."""

    sample: int | None = None
    fraction: float | None = None
    where: str | None = None
    group_by: str | None = None
    stratify: str | None = None
    query_size: int | None = None
    small_groups: str = "skip"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sample is not None and self.sample < 1:
            raise DataError(f"sample must be ≥ 1 row, got {self.sample}")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise DataError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.sample is not None and self.fraction is not None:
            raise DataError("give sample (a number of rows) or fraction, not both")
        if self.stratify is not None and self.sample is None and self.fraction is None:
            raise DataError(f"stratify by '{self.stratify}' needs a sample or a fraction to "
                            "share out")
        if self.query_size is not None and self.query_size < 1:
            raise DataError(f"query_size must be ≥ 1, got {self.query_size}")
        if self.small_groups not in SMALL_GROUP_POLICIES:
            raise DataError(f"small_groups must be one of {', '.join(SMALL_GROUP_POLICIES)}, "
                            f"got {self.small_groups!r}")


@dataclass
class SelectedRows:
    """The selected rows, their positions in the source, and counts for the report."""

    table: pa.Table
    positions: np.ndarray
    source_rows: int
    matched_rows: int
    query_ids: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def columns(self) -> dict[str, np.ndarray]:
        """The rows as named numpy columns (see ``datasets.to_numpy_columns``)."""
        return to_numpy_columns(self.table)

    @property
    def num_rows(self) -> int:
        """Rows selected."""
        return self.table.num_rows


# ---------------------------------------------------------------------------------- passes


def _check_column(source: Source, name: str, flag: str) -> None:
    if name not in source.schema.names:
        close = difflib.get_close_matches(name, source.schema.names, n=3)
        hint = f"; close column names: {', '.join(close)}" if close else ""
        raise DataError(f"{flag} column '{name}' is not in {source.label}{hint}")


def _filtered(source: Source, columns: list[str], where: Filter | None,
              row_groups: list[RowGroup] | None) -> Iterator[tuple[np.ndarray, pa.Table, int]]:
    """(positions, rows, rows scanned) of each batch, the filter applied."""
    def batches() -> Iterator[tuple[int, pa.Table]]:
        if row_groups is not None:
            for group in row_groups:
                with source.errors():
                    yield group.start, group.read(columns)
            return
        start = 0
        for table in source.scan(columns):
            yield start, table
            start += table.num_rows

    for start, table in batches():
        scanned = table.num_rows
        positions = np.arange(start, start + scanned, dtype=np.int64)
        if where is not None:
            with source.errors():
                table = table.append_column("__position", pa.array(positions)).filter(
                    where.expression)
            positions = table.column("__position").to_numpy()
            table = table.drop_columns(["__position"])
        yield positions, table, scanned


def _priorities(table: pa.Table, positions: np.ndarray, selection: Selection) -> np.ndarray:
    if selection.group_by is None:
        return row_priorities(positions, selection.seed)
    hashes = value_hashes(table.column(selection.group_by), selection.group_by)
    return mix(hashes ^ seed_key(selection.seed, 2))


def _strata_counts(source: Source, selection: Selection, where: Filter | None,
                   row_groups: list[RowGroup] | None) -> dict[int, int]:
    """Rows per stratum (by value hash), checking that a group never spans two strata."""
    assert selection.stratify is not None
    columns = _unique([selection.stratify, *(where.columns if where else ()),
                       *([selection.group_by] if selection.group_by else [])])
    counts: dict[int, int] = {}
    stratum_of_group: dict[int, int] = {}
    for _, table, _ in _filtered(source, columns, where, row_groups):
        strata = value_hashes(table.column(selection.stratify), selection.stratify)
        values, numbers = np.unique(strata, return_counts=True)
        for value, number in zip(values.tolist(), numbers.tolist(), strict=True):
            counts[value] = counts.get(value, 0) + number
        if selection.group_by is not None:
            groups = value_hashes(table.column(selection.group_by), selection.group_by)
            pairs = np.unique(np.stack([groups, strata], axis=1), axis=0)
            for group, stratum in pairs.tolist():
                if stratum_of_group.setdefault(group, stratum) != stratum:
                    raise DataError(
                        f"stratify column '{selection.stratify}' changes within one group of "
                        f"'{selection.group_by}'; stratify by a column that is constant per group")
    return counts


def _quotas(counts: dict[int, int], selection: Selection) -> dict[int, int]:
    """Each stratum's share of the sample: proportional, rounded by largest remainder."""
    total = sum(counts.values())
    keys = sorted(counts)
    if selection.fraction is not None:
        return {k: int(round(selection.fraction * counts[k])) for k in keys}
    assert selection.sample is not None
    want = min(selection.sample, total)
    exact = {k: want * counts[k] / total for k in keys}
    quotas = {k: int(exact[k]) for k in keys}
    spare = want - sum(quotas.values())
    for k in sorted(keys, key=lambda k: (quotas[k] - exact[k], k))[:spare]:
        quotas[k] += 1
    return quotas


def _choose(source: Source, selection: Selection, where: Filter | None,
            row_groups: list[RowGroup] | None, key_columns: list[str],
            payload: list[str] | None) -> tuple[np.ndarray, pa.Table | None, int, int]:
    """(positions, rows or None, rows scanned, rows matched) of the chosen rows."""
    cut = None if selection.fraction is None else int(selection.fraction * ALL_PRIORITIES)
    grouped = selection.group_by is not None
    keepers: dict[int, Keeper] = {}
    quotas: dict[int, int] | None = None
    if selection.stratify is not None:
        quotas = _quotas(_strata_counts(source, selection, where, row_groups), selection)
        # Each stratum keeps its quota of lowest priorities: no Bernoulli cut on top.
        keepers = {k: Keeper(q, None, grouped) for k, q in quotas.items()}
        cut = None
    single = Keeper(selection.sample, cut, grouped)
    columns = _unique([*key_columns, *(payload or [])])
    scanned = matched = 0
    for positions, table, rows in _filtered(source, columns, where, row_groups):
        scanned += rows
        matched += positions.size
        if not positions.size:
            continue
        priorities = _priorities(table, positions, selection)
        kept = table.select(payload) if payload is not None else None
        if quotas is None:
            single.add(priorities, positions, kept)
            continue
        assert selection.stratify is not None
        strata = value_hashes(table.column(selection.stratify), selection.stratify)
        for stratum in np.unique(strata).tolist():
            rows_in = np.flatnonzero(strata == stratum)
            part = kept.take(pa.array(rows_in)) if kept is not None else None
            keepers[stratum].add(priorities[rows_in], positions[rows_in], part)
    results = [k.result() for k in keepers.values()] if quotas is not None else [single.result()]
    found = [(p, t) for p, t in results if p.size]
    if not found:
        return np.empty(0, dtype=np.int64), None, scanned, matched
    positions = np.concatenate([p for p, _ in found])
    order = np.argsort(positions, kind="stable")
    table = None
    if payload is not None:
        table = pa.concat_tables([t for _, t in found if t is not None]).take(pa.array(order))
    return positions[order], table, scanned, matched


def _plain_positions(total: int, selection: Selection) -> np.ndarray:
    """Positions chosen among ``total`` rows with no filter, groups or strata."""
    cut = None if selection.fraction is None else int(selection.fraction * ALL_PRIORITIES)
    keeper = Keeper(selection.sample, cut, grouped=False)
    for start in range(0, total, _POSITION_CHUNK):
        positions = np.arange(start, min(start + _POSITION_CHUNK, total), dtype=np.int64)
        keeper.add(row_priorities(positions, selection.seed), positions, None)
    return keeper.result()[0]


def _gather(source: Source, row_groups: list[RowGroup], positions: np.ndarray,
            columns: list[str]) -> pa.Table:
    """The rows at ``positions`` (sorted), reading only the row groups that hold them."""
    parts: list[pa.Table] = []
    for group in row_groups:
        low = int(np.searchsorted(positions, group.start))
        high = int(np.searchsorted(positions, group.start + group.num_rows))
        if high > low:
            with source.errors():
                table = group.read(columns)
            if high - low == group.num_rows:
                parts.append(table)
            else:
                parts.append(table.take(pa.array(positions[low:high] - group.start)))
    if not parts:
        return pa.schema([source.schema.field(c) for c in columns]).empty_table()
    return pa.concat_tables(parts)


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def select_rows(
    source: str | Path | ds.Dataset | Source,
    selection: Selection | None = None,
    *,
    columns: Sequence[str] | None = None,
) -> SelectedRows:
    """The rows ``selection`` picks from ``source``, holding ``columns`` (all when None).

    The group-by column is always kept, so that requests and queries can use it.
    """
    selection = selection or Selection()
    opened = open_source(source)
    where = parse_where(selection.where, opened.schema) if selection.where else None
    for name, flag in ((selection.group_by, "group_by"), (selection.stratify, "stratify")):
        if name is not None:
            _check_column(opened, name, flag)
    for name in columns or ():
        _check_column(opened, name, "selected")
    wanted = _unique([*(columns if columns is not None else opened.schema.names),
                      *([selection.group_by] if selection.group_by else [])])
    key_columns = _unique([*(where.columns if where else ()),
                           *([selection.group_by] if selection.group_by else []),
                           *([selection.stratify] if selection.stratify else [])])
    sampling = selection.sample is not None or selection.fraction is not None
    all_groups = opened.row_groups()
    row_groups = opened.row_groups(where.expression) if where and all_groups else all_groups
    table: pa.Table | None
    if row_groups is not None and sampling and not key_columns:
        total = sum(group.num_rows for group in row_groups)
        positions, matched = _plain_positions(total, selection), total
        table = _gather(opened, row_groups, positions, wanted)
    elif row_groups is not None and sampling:
        positions, _, _, matched = _choose(opened, selection, where, row_groups, key_columns,
                                           None)
        table = _gather(opened, row_groups, positions, wanted)
    else:
        positions, table, scanned, matched = _choose(opened, selection, where, row_groups,
                                                     key_columns, wanted)
    if all_groups is not None:
        scanned = sum(group.num_rows for group in all_groups)
    if table is None:
        table = pa.schema([opened.schema.field(c) for c in wanted]).empty_table()
    if scanned == 0:
        raise DataError(f"{opened.label} has no rows")
    if table.num_rows == 0:
        raise DataError(f"--where {selection.where!r} selects no rows of {opened.label} "
                        f"({scanned} rows); loosen the filter")
    rows = SelectedRows(table, positions, scanned, matched)
    if opened.skipped_columns:
        rows.notes.append(f"features first seen after the schema records were skipped: "
                          f"{', '.join(opened.skipped_columns)}")
    if selection.query_size is not None:
        _arrange_queries(rows, selection)
    return rows


def _arrange_queries(rows: SelectedRows, selection: Selection) -> None:
    """Reorder ``rows`` into queries of ``query_size`` consecutive rows."""
    assert selection.query_size is not None
    groups = None
    if selection.group_by is not None:
        groups = to_numpy_columns(rows.table.select([selection.group_by]))[selection.group_by]
    plan = plan_queries(rows.num_rows, selection.query_size, groups=groups,
                        group_column=selection.group_by or "group_by", seed=selection.seed,
                        small_groups=selection.small_groups)
    order = plan.order()
    rows.table = rows.table.take(pa.array(order))
    rows.positions = rows.positions[order]
    rows.query_ids = plan.query_ids()
    if plan.skipped_groups:
        rows.notes.append(f"{plan.skipped_groups} groups smaller than {selection.query_size} "
                          "rows were left out")
    if plan.unused_rows:
        rows.notes.append(f"{plan.unused_rows} selected rows fell outside the queries")
