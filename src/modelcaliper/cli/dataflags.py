"""The data-selection flags shared by commands that build requests from rows.

``--data`` (Parquet, CSV, JSON lines, TFRecord) or synthetic rows from the signature, then
``--sample``/``--fraction``, ``--where``, ``--group-by``, ``--query-size``, ``--stratify``,
``--map``/``--map-file`` and ``--data-seed``, all handed to ``modelcaliper.workload``. The
result is one column per model input (already mapped, coerced and shaped), plus the group
column when there is one, so the caller can cut requests without knowing about the map.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelcaliper.errors import UsageError
from modelcaliper.signature import Signature

__all__ = ["DataRows", "add_data_arguments", "load_rows"]


def add_data_arguments(parser: argparse.ArgumentParser, *, seed_flag: str = "--data-seed") -> None:
    """Add the data source and selection flags to ``parser`` (in their own group)."""
    group = parser.add_argument_group("data selection")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--synthetic", action="store_true",
                        help="synthetic rows from the signature (the default without --data)")
    source.add_argument("--data", metavar="PATH",
                        help="Parquet, CSV, JSON-lines or TFRecord file, directory or glob")
    group.add_argument("--sample", type=int, metavar="N",
                       help="a seeded sample of N rows (whole groups with --group-by)")
    group.add_argument("--fraction", type=float, metavar="F",
                       help="keep each row (or group) with probability F")
    group.add_argument("--where", metavar="EXPR",
                       help="filter rows, e.g. \"country == 'US' and price > 10\"")
    group.add_argument("--group-by", metavar="COL",
                       help="column naming each row's query; queries are kept whole")
    group.add_argument("--query-size", type=int, metavar="K",
                       help="arrange the rows as queries of exactly K candidates")
    group.add_argument("--small-groups", choices=("skip", "repeat"), default="skip",
                       help="with --query-size: groups smaller than K are skipped or topped up "
                            "by repeating their rows (default skip)")
    group.add_argument("--stratify", metavar="COL",
                       help="share the sample out in proportion to this column's values")
    group.add_argument("--map", action="append", default=[], metavar="INPUT=COLUMN",
                       help="feed INPUT from COLUMN (repeatable)")
    group.add_argument("--map-file", metavar="FILE",
                       help="input-to-column map as JSON (or YAML with PyYAML installed)")
    group.add_argument(seed_flag, dest="data_seed", type=int, default=0, metavar="N",
                       help="seed of the data sample and of synthetic rows (default 0)")


@dataclass
class DataRows:
    """Rows ready to cut into requests: one column per input, plus the group column."""

    columns: dict[str, np.ndarray]
    group_by: str | None
    num_rows: int
    source: str
    notes: list[str] = field(default_factory=list)


def load_rows(args: argparse.Namespace, signature: Signature, *, default_rows: int,
              synthetic_query_size: int = 100) -> DataRows:
    """Select and map the rows ``args`` describe, or make synthetic ones from ``signature``."""
    from modelcaliper.workload import QUERY_COLUMN, synthetic_columns
    from modelcaliper.workload.mapping import load_input_map, map_inputs
    from modelcaliper.workload.selection import Selection, select_rows

    data = getattr(args, "data", None)
    if not data:
        for flag in ("where", "stratify", "fraction", "map_file"):
            if getattr(args, flag, None):
                raise UsageError(f"--{flag.replace('_', '-')} selects from --data; "
                                 "give a data file or drop the flag")
        rows = args.sample or default_rows
        query_size = args.query_size or synthetic_query_size
        columns = synthetic_columns(signature, rows, seed=args.data_seed, query_size=query_size)
        return DataRows(columns, args.group_by or QUERY_COLUMN, rows, "synthetic")
    selection = Selection(
        sample=args.sample if args.sample is not None else (
            None if args.fraction is not None or args.query_size else default_rows),
        fraction=args.fraction, where=args.where, group_by=args.group_by,
        stratify=args.stratify, query_size=args.query_size, small_groups=args.small_groups,
        seed=args.data_seed)
    selected = select_rows(data, selection)
    raw: dict[str, Any] = selected.columns()
    input_map = load_input_map(args.map_file, args.map)
    keep = [args.group_by] if args.group_by else []
    mapped = map_inputs(raw, signature, input_map, keep=keep)
    columns = dict(mapped.tensors)
    group_by = args.group_by
    if selected.query_ids is not None:
        columns[QUERY_COLUMN] = np.asarray(selected.query_ids)
        group_by = QUERY_COLUMN
    elif args.group_by:
        columns[args.group_by] = np.asarray(raw[args.group_by])
    notes = list(selected.notes)
    if mapped.unused:
        notes.append(f"columns not used by the model: {', '.join(mapped.unused)}")
    return DataRows(columns, group_by, selected.num_rows, str(data), notes)
