"""Rows for a run or an analysis: a selection from a dataset, or synthetic rows, mapped to inputs.

The one place that turns "which data" (a source, a ``Selection``, an input map, a seed) into
one column per model input plus the group column, so every command cuts requests from
rows prepared the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelcaliper.errors import UsageError
from modelcaliper.signature import Signature

__all__ = ["DataOptions", "DataRows", "load_rows_from"]


@dataclass(frozen=True)
class DataOptions:
    """Which rows: a source (or None for synthetic rows) and how to select and map them."""

    data: str | None = None
    sample: int | None = None
    fraction: float | None = None
    where: str | None = None
    group_by: str | None = None
    query_size: int | None = None
    small_groups: str = "skip"
    stratify: str | None = None
    maps: Sequence[str] = ()
    map_file: str | None = None
    data_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The options as plain values (for specs and reports)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class DataRows:
    """Rows ready to cut into requests: one column per input, plus the group column."""

    columns: dict[str, np.ndarray]
    group_by: str | None
    num_rows: int
    source: str
    notes: list[str] = field(default_factory=list)


def load_rows_from(options: DataOptions, signature: Signature, *, default_rows: int,
                   synthetic_query_size: int = 100) -> DataRows:
    """Select and map the rows ``options`` describe, or make synthetic ones from ``signature``."""
    from modelcaliper.workload import QUERY_COLUMN, synthetic_columns
    from modelcaliper.workload.mapping import load_input_map, map_inputs
    from modelcaliper.workload.selection import Selection, select_rows

    if not options.data:
        for flag in ("where", "stratify", "fraction", "map_file"):
            if getattr(options, flag, None):
                raise UsageError(f"--{flag.replace('_', '-')} selects from --data; "
                                 "give a data file or drop the flag")
        rows = options.sample or default_rows
        query_size = options.query_size or synthetic_query_size
        columns = synthetic_columns(signature, rows, seed=options.data_seed,
                                    query_size=query_size)
        return DataRows(columns, options.group_by or QUERY_COLUMN, rows, "synthetic")
    sample = options.sample
    if sample is None and options.fraction is None and not options.query_size:
        sample = default_rows
    selection = Selection(
        sample=sample, fraction=options.fraction, where=options.where,
        group_by=options.group_by, stratify=options.stratify, query_size=options.query_size,
        small_groups=options.small_groups, seed=options.data_seed)
    selected = select_rows(options.data, selection)
    raw: dict[str, Any] = selected.columns()
    input_map = load_input_map(options.map_file, list(options.maps))
    keep = [options.group_by] if options.group_by else []
    mapped = map_inputs(raw, signature, input_map, keep=keep)
    columns = dict(mapped.tensors)
    group_by = options.group_by
    if selected.query_ids is not None:
        columns[QUERY_COLUMN] = np.asarray(selected.query_ids)
        group_by = QUERY_COLUMN
    elif options.group_by:
        columns[options.group_by] = np.asarray(raw[options.group_by])
    notes = list(selected.notes)
    if mapped.unused:
        notes.append(f"columns not used by the model: {', '.join(mapped.unused)}")
    return DataRows(columns, group_by, selected.num_rows, str(options.data), notes)
