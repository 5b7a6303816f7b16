"""What the pages and the API share: reading filters from a query string and loading views.

Every function here is synchronous (SQLite and file reads); the routes run them in a thread.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from modelcaliper.errors import UsageError

__all__ = ["MAX_COMPARED", "MAX_OFFSET", "MAX_PAGE", "PER_PAGE", "RUN_COLUMNS", "TAG_PATTERN",
           "NotFound",
           "api_listing", "compare_data", "listing", "page_number", "run_data", "run_folder",
           "stored_run"]

PER_PAGE = 50
"""Runs per page by default."""

MAX_PAGE = 500
"""Most runs one page or API call returns."""

MAX_COMPARED = 8
"""Most runs one comparison takes."""

MAX_OFFSET = 10**12
"""Largest ``offset`` a listing accepts."""

RUN_COLUMNS = (("model", "model"), ("model_version", "version"), ("created_at", "time"),
               ("rate_per_s", "rate"), ("batch_size", "batch"), ("p50_ms", "p50"),
               ("p99_ms", "p99"), ("error_rate", "errors"),
               ("deadline_miss_rate", "deadline misses"), ("verdict", "verdict"))
"""Sortable columns of the Runs table: (store column, heading)."""


class NotFound(LookupError):
    """A run the store does not have."""


def _whole(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text in (None, ""):
        return default
    try:
        value = int(text)  # type: ignore[arg-type]
    except ValueError:
        raise UsageError(f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise UsageError(f"{name} must be {low}..{high}, got {value}")
    return value


def page_number(text: str | None) -> int:
    """The 1-based page number of a query string (UsageError when not a number ≥ 1)."""
    return _whole(text, "page", 1, 1, 10**9)


def _sort(text: str | None) -> str:
    """The sort order of a query string: a store column, '-' first for descending."""
    from modelcaliper.store import SORT_COLUMNS

    order = text or "-created_at"
    if order.removeprefix("-") not in SORT_COLUMNS:
        raise UsageError(f"sort must be one of {', '.join(SORT_COLUMNS)} ('-' first for "
                         f"descending), got {order!r}")
    return order


# RFC 3339 date-time (the API's time format); pages also take any ISO 8601 date or time.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _moment(text: str | None, name: str, strict: bool) -> str | None:
    if not text:
        return None
    if strict:
        try:
            if not _RFC3339.fullmatch(text):
                raise ValueError(text)
            datetime.fromisoformat(text.upper())
        except ValueError:
            raise UsageError(f"{name} must be an RFC 3339 date-time such as "
                             f"2026-11-27T04:15:00Z, got {text!r}") from None
        return text.upper()
    return text


def _filters(params: Mapping[str, Any], tags: Sequence[str],
             strict: bool = False) -> dict[str, Any]:
    from modelcaliper.store import STATUSES

    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise UsageError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return {"model": params.get("model") or None, "version": params.get("version") or None,
            "tag": [t for t in tags if t] or None, "status": status,
            "since": _moment(params.get("since"), "since", strict),
            "until": _moment(params.get("until"), "until", strict)}


_LISTING_PARAMS = ("model", "version", "status", "since", "until", "sort", "limit", "offset")
_EDGE = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
TAG_PATTERN = rf"{_EDGE}([^\x00-\x1f\x7f]{{0,62}}{_EDGE})?"
"""A tag as the API takes it: 1-64 characters, no control characters, no blanks around."""
_TAG = re.compile(TAG_PATTERN)


def _check_api_params(params: Mapping[str, Any], tags: Sequence[str]) -> None:
    """The API takes its parameters as documented: no empty values (leave a parameter out
    instead), tags as stored (1-64 characters, no control characters, no leading blank)."""
    for name in _LISTING_PARAMS:
        if name in params and params.get(name) == "":
            raise UsageError(f"{name} is empty: give it a value or leave it out")
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise UsageError(f"tag {tag!r} must be 1-64 characters without control characters "
                             f"or surrounding blanks")


def api_listing(store: Any, params: Mapping[str, Any], tags: Sequence[str]) -> dict[str, Any]:
    """``/api/runs``: a page of index rows with the total matching the filters."""
    _check_api_params(params, tags)
    limit = _whole(params.get("limit"), "limit", PER_PAGE, 1, MAX_PAGE)
    offset = _whole(params.get("offset"), "offset", 0, 0, MAX_OFFSET)
    filters = _filters(params, tags, strict=True)
    order = _sort(params.get("sort"))
    runs = store.list_runs(**filters, order_by=order, limit=limit, offset=offset)
    return {"runs": [run.to_dict() for run in runs], "total": store.count_runs(**filters),
            "limit": limit, "offset": offset, "sort": order}


def listing(store: Any, params: Mapping[str, Any], tags: Sequence[str]) -> dict[str, Any]:
    """The Runs page: one page of runs, the filters, sort links and page links."""
    per_page = _whole(params.get("per_page"), "per_page", PER_PAGE, 1, MAX_PAGE)
    page = page_number(params.get("page"))
    sort = _sort(params.get("sort"))
    filters = _filters(params, tags[:1])
    runs = store.list_runs(**filters, order_by=sort, limit=per_page,
                           offset=(page - 1) * per_page)
    total = store.count_runs(**filters)
    pages = max(1, math.ceil(total / per_page))
    kept = [(k, v) for k, v in (("model", filters["model"]), ("version", filters["version"]),
                                ("tag", (filters["tag"] or [None])[0])) if v]
    if per_page != PER_PAGE:
        kept.append(("per_page", str(per_page)))

    def link(**changes: Any) -> str:
        query = dict(kept, sort=sort, page=str(page))
        query.update({k: str(v) for k, v in changes.items()})
        return "/?" + urlencode(query)

    sort_links = {}
    for column, _ in RUN_COLUMNS:
        descending_first = column not in ("model", "model_version")
        if sort == column:
            sort_links[column] = link(sort=f"-{column}", page=1)
        elif sort == f"-{column}":
            sort_links[column] = link(sort=column, page=1)
        else:
            sort_links[column] = link(sort=f"-{column}" if descending_first else column, page=1)
    models = sorted({run.model for run in store.list_runs(limit=MAX_PAGE) if run.model})
    return {"runs": runs, "total": total, "page": page, "pages": pages, "per_page": per_page,
            "sort": sort, "columns": RUN_COLUMNS, "sort_links": sort_links,
            "filters": {"model": filters["model"], "version": filters["version"],
                        "tag": (filters["tag"] or [None])[0]},
            "tags": store.tags(), "models": models,
            "prev": link(page=page - 1) if page > 1 else None,
            "next": link(page=page + 1) if page < pages else None}


def _stored(store: Any, run_id: str) -> tuple[Any, Any]:
    from modelcaliper.store import check_run_id

    try:
        check_run_id(run_id)
    except UsageError:
        raise NotFound(run_id) from None
    stored = store.get_run(run_id)
    if stored is None:
        raise NotFound(run_id)
    folder = store.resolve_folder(stored)
    return folder, stored


def run_folder(store: Any, run_id: str) -> Any:
    """The folder of a stored run, None when its folder is gone (NotFound without the run)."""
    return _stored(store, run_id)[0]


def run_data(store: Any, run_id: str) -> dict[str, Any]:
    """The Run view of one stored run (NotFound when the store has no such run)."""
    from pathlib import Path

    from modelcaliper.report.data import run_view

    folder, stored = _stored(store, run_id)
    return run_view(folder if folder is not None else Path("/nonexistent") / run_id, stored)


def stored_run(store: Any, run_id: str) -> dict[str, Any]:
    """The index row of one run with its summary, spec and environment."""
    return _stored(store, run_id)[1].to_dict()


def compare_data(store: Any, run_ids: Sequence[str], by_time: bool = False) -> dict[str, Any]:
    """The Compare view of 2..MAX_COMPARED stored runs, the first the baseline (the oldest
    with ``by_time``, as when runs are ticked in the Runs table)."""
    from pathlib import Path

    from modelcaliper.report.compare import compare_view

    if not 2 <= len(run_ids) <= MAX_COMPARED:
        raise UsageError(f"compare takes 2 to {MAX_COMPARED} runs (?run=A&run=B), "
                         f"got {len(run_ids)}")
    pairs = []
    for run_id in run_ids:
        folder, stored = _stored(store, run_id)
        pairs.append((folder if folder is not None else Path("/nonexistent") / run_id, stored))
    if by_time:
        pairs.sort(key=lambda pair: (pair[1].created_at, pair[1].run_id))
    return compare_view(pairs)
