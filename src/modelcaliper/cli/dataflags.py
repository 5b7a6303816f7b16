"""The data-selection flags shared by commands that build requests from rows.

``--data`` (Parquet, CSV, JSON lines, TFRecord) or synthetic rows from the signature, then
``--sample``/``--fraction``, ``--where``, ``--group-by``, ``--query-size``, ``--stratify``,
``--map``/``--map-file`` and ``--data-seed``, all handed to ``modelcaliper.workload``. The
result is one column per model input (already mapped, coerced and shaped), plus the group
column when there is one, so the caller can cut requests without knowing about the map.
"""

from __future__ import annotations

import argparse

from modelcaliper.signature import Signature
from modelcaliper.workload.loader import DataOptions, DataRows, load_rows_from

__all__ = ["DataRows", "add_data_arguments", "data_options", "load_rows"]


def add_data_arguments(parser: argparse.ArgumentParser, *, source: bool = True,
                       group_by: bool = True, seed: bool = True) -> None:
    """Add the data selection flags to ``parser`` (in their own group).

    ``source``, ``group_by`` and ``seed`` add ``--synthetic``/``--data``, ``--group-by`` and
    ``--data-seed``, for commands that do not define those themselves.
    """
    group = parser.add_argument_group("data selection")
    if source:
        sources = group.add_mutually_exclusive_group()
        sources.add_argument("--synthetic", action="store_true",
                             help="synthetic rows from the signature (the default without --data)")
        sources.add_argument("--data", metavar="PATH",
                             help="Parquet, CSV, JSON-lines or TFRecord file, directory or glob")
    group.add_argument("--sample", type=int, metavar="N",
                       help="a seeded sample of N rows (whole groups with --group-by)")
    group.add_argument("--fraction", type=float, metavar="F",
                       help="keep each row (or group) with probability F")
    group.add_argument("--where", metavar="EXPR",
                       help="filter rows, e.g. \"country == 'US' and price > 10\"")
    if group_by:
        group.add_argument("--group-by", metavar="COL",
                           help="column naming each row's query; queries are kept whole")
    group.add_argument("--query-size", type=int, metavar="K",
                       help="arrange the rows as queries of exactly K candidates")
    group.add_argument("--small-groups", choices=("skip", "repeat"), default="skip",
                       help="with --query-size: groups smaller than K are skipped or topped up "
                            "by repeating their rows (default skip)")
    group.add_argument("--stratify", metavar="COL",
                       help="share the sample out in proportion to this column's values")
    group.add_argument("--map", action="append", metavar="INPUT=COLUMN",
                       help="feed INPUT from COLUMN (repeatable)")
    group.add_argument("--map-file", metavar="FILE",
                       help="input-to-column map as JSON (or YAML with PyYAML installed)")
    if seed:
        group.add_argument("--data-seed", type=int, default=0, metavar="N",
                           help="seed of the data sample and of synthetic rows (default 0)")


def data_options(args: argparse.Namespace) -> DataOptions:
    """The ``DataOptions`` the parsed flags describe."""
    return DataOptions(
        data=getattr(args, "data", None), sample=args.sample, fraction=args.fraction,
        where=args.where, group_by=getattr(args, "group_by", None), query_size=args.query_size,
        small_groups=args.small_groups, stratify=args.stratify, maps=tuple(args.map or ()),
        map_file=args.map_file, data_seed=getattr(args, "data_seed", 0) or 0)


def load_rows(args: argparse.Namespace, signature: Signature, *, default_rows: int,
              synthetic_query_size: int = 100) -> DataRows:
    """Select and map the rows the parsed flags describe (see ``workload.loader``)."""
    return load_rows_from(data_options(args), signature, default_rows=default_rows,
                          synthetic_query_size=synthetic_query_size)
