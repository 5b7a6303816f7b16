"""Where runs are kept: a folder of artifacts per run and an SQLite index of every run.

    RunFolder("runs", model="ranker")        runs/<run_id>/ with summary, spec, environment,
                                             histograms, intervals, server metrics, records
    Store("runs/caliper.db").save_run(folder, tags=[...], assertions=[...])
    Store(...).list_runs(model="ranker", tag="nightly", order_by="-p99_ms", limit=20)

``run`` writes both; ``report``, ``compare`` and the web UI only read them (docs/store.md).
"""

from __future__ import annotations

from modelcaliper.store.environment import collect_environment
from modelcaliper.store.migrations import LATEST_VERSION, MIGRATIONS, Migration
from modelcaliper.store.runfolder import (
    STATUSES,
    RunFolder,
    check_run_id,
    indexable_summary,
    list_run_folders,
    load_environment,
    load_histograms,
    load_intervals,
    load_queries,
    load_requests,
    load_server_metrics,
    load_spec,
    load_status,
    load_summary,
    metrics_diff,
    new_run_id,
)
from modelcaliper.store.schema import SORT_COLUMNS, AssertionResult, StoredRun
from modelcaliper.store.sqlite import DEFAULT_PATH, Store

__all__ = [
    "DEFAULT_PATH",
    "LATEST_VERSION",
    "MIGRATIONS",
    "SORT_COLUMNS",
    "STATUSES",
    "AssertionResult",
    "Migration",
    "RunFolder",
    "Store",
    "StoredRun",
    "check_run_id",
    "collect_environment",
    "indexable_summary",
    "list_run_folders",
    "load_environment",
    "load_histograms",
    "load_intervals",
    "load_queries",
    "load_requests",
    "load_server_metrics",
    "load_spec",
    "load_status",
    "load_summary",
    "metrics_diff",
    "new_run_id",
]
