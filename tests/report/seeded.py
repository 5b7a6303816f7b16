"""Seeded synthetic runs for the report and web tests: every artifact of a run folder, built
deterministically from numpy's generator (no clock, no driver), and saved in a Store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from modelcaliper.stats.histogram import Histogram
from modelcaliper.store import RunFolder, Store

SERVER_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
HOSTILE_MODEL = "<script>alert(1)</script>"
HOSTILE_ERROR = '<img src=x onerror="alert(2)"> & </script><b>bold</b>'


@dataclass(frozen=True)
class Seeded:
    """How one synthetic run is made."""

    run_id: str
    model: str = "ranker"
    version: str = "1"
    seed: int = 1
    requests: int = 2000
    rate_per_s: float = 100.0
    scale_ms: float = 8.0
    error_rate: float = 0.02
    timeout_rate: float = 0.005
    batch_size: int = 25
    candidates: int = 100
    deadline_ms: float = 40.0
    started_at: str = "2026-11-27T04:15:00.000Z"
    error_text: str = "upstream refused the request (503)"
    server: bool = True
    profile: bool = True
    row_group_rows: int = 65536
    tags: tuple[str, ...] = ()


def _hist(values_us: np.ndarray) -> Histogram:
    hist = Histogram()
    if len(values_us):
        hist.record_many(values_us)
    return hist


def _ms(hist: Histogram, q: float) -> float | None:
    return hist.percentile(q) / 1e3 if hist.count else None


def _latency_summary(hist: Histogram) -> dict[str, Any]:
    return {"count": hist.count, "mean": hist.mean / 1e3, "p50": _ms(hist, 50),
            "p90": _ms(hist, 90), "p95": _ms(hist, 95), "p99": _ms(hist, 99),
            "p999": _ms(hist, 99.9), "max": hist.max / 1e3}


def _phase_summary(hist: Histogram, mean_latency_us: float) -> dict[str, Any]:
    return {"count": hist.count, "mean": hist.mean / 1e3, "p50": _ms(hist, 50),
            "p99": _ms(hist, 99), "share": hist.mean / mean_latency_us}


def _server_metrics(total_ms: np.ndarray) -> tuple[dict, dict, dict]:
    before = {f'caliper_server_phase_seconds_bucket{{phase="total",le="{b:g}"}}': 10.0
              for b in SERVER_BUCKETS_S}
    before['caliper_server_phase_seconds_bucket{phase="total",le="+Inf"}'] = 10.0
    before['caliper_server_phase_seconds_count{phase="total"}'] = 10.0
    after = {}
    for bound in SERVER_BUCKETS_S:
        after[f'caliper_server_phase_seconds_bucket{{phase="total",le="{bound:g}"}}'] = \
            10.0 + float(np.count_nonzero(total_ms <= bound * 1e3))
    after['caliper_server_phase_seconds_bucket{phase="total",le="+Inf"}'] = 10.0 + len(total_ms)
    after['caliper_server_phase_seconds_count{phase="total"}'] = 10.0 + len(total_ms)
    diff = {key: after[key] - before.get(key, 0.0) for key in after}
    return before, after, diff


def write_seeded_run(root: Path, spec: Seeded) -> RunFolder:
    """Write every artifact of ``spec``'s run under ``root`` and return its folder."""
    rng = np.random.default_rng(spec.seed)
    n = spec.requests
    latency_us = rng.lognormal(np.log(spec.scale_ms * 1e3), 0.45, n)
    tail = rng.random(n) < 0.01
    latency_us = np.where(tail, latency_us * 5, latency_us).astype(np.int64) + 200
    lag = rng.exponential(60, n).astype(np.int64)
    queue = rng.exponential(30, n).astype(np.int64)
    send = (10 + rng.exponential(5, n)).astype(np.int64)
    receive = rng.exponential(20, n).astype(np.int64)
    wait = latency_us - lag - queue - send - receive
    server_total_us = (wait * 0.8).astype(np.int64)
    draw = rng.random(n)
    status = np.where(draw < spec.timeout_rate, "timeout",
                      np.where(draw < spec.timeout_rate + spec.error_rate, "error", "ok"))
    intended_ns = (np.arange(n) * 1e9 / spec.rate_per_s).astype(np.int64)
    dispatched = intended_ns + lag * 1000
    sent = dispatched + queue * 1000
    written = sent + send * 1000
    first_byte = written + wait * 1000
    done = first_byte + receive * 1000
    ok = status == "ok"
    fractions = {"recv": 0.05, "decode": 0.1, "queue": 0.15, "compute": 0.6, "encode": 0.1}
    columns: dict[str, Any] = {
        "index": np.arange(n, dtype=np.int64),
        "query": np.arange(n, dtype=np.int64) // 4, "worker": np.zeros(n, np.int16),
        "warmup": np.zeros(n, bool), "intended_ns": intended_ns, "dispatched_ns": dispatched,
        "sent_ns": sent, "written_ns": written, "first_byte_ns": first_byte, "done_ns": done,
        "status": status.astype(object),
        "code": np.where(ok, "200", np.where(status == "timeout", "", "503")).astype(object),
        "error_kind": np.where(ok, None, np.where(status == "timeout", "timeout",
                                                  "http_503")).astype(object),
        "request_bytes": np.full(n, 4096, np.int64),
        "response_bytes": np.where(ok, 512, 0).astype(np.int64),
        "rows": np.full(n, spec.batch_size, np.int32)}
    for phase, share in fractions.items():
        columns[f"server_{phase}_ms"] = (server_total_us * share / 1e3).astype(np.float32)
    columns["server_total_ms"] = (server_total_us / 1e3).astype(np.float32)

    folder = RunFolder(root, spec.run_id)
    pq.write_table(pa.table(columns), folder.path / "requests.parquet",
                   row_group_size=spec.row_group_rows)
    per_query = spec.candidates // spec.batch_size
    queries = n // per_query
    query_us = latency_us[: queries * per_query].reshape(queries, per_query).max(axis=1)

    hist = {"latency": _hist(latency_us), "latency_ok": _hist(latency_us[ok]),
            "query_latency": _hist(query_us), "schedule_lag": _hist(lag),
            "client_queue": _hist(queue), "send": _hist(send), "wait": _hist(wait),
            "receive": _hist(receive),
            "network": _hist(latency_us - lag - queue - server_total_us)}
    if spec.server:
        hist["total"] = _hist(server_total_us)
        for phase, share in fractions.items():
            hist[phase] = _hist((server_total_us * share).astype(np.int64))
    folder.write_histograms(hist)

    second = done // 1_000_000_000
    order = np.argsort(second, kind="stable")
    edges = np.searchsorted(second[order], np.arange(int(second.max()) + 2))
    due_second = intended_ns // 1_000_000_000  # the schedule lag goes by intended time
    rows = []
    for start in range(int(second.max()) + 1):
        picked = order[edges[start]:edges[start + 1]]
        h = _hist(latency_us[picked])
        due = lag[due_second == start]
        lag_max = float(due.max()) / 1e3 if len(due) else None
        rows.append({"start_s": float(start), "count": len(picked),
                     "ok": int(ok[picked].sum()),
                     "errors": int((status[picked] == "error").sum()),
                     "timeouts": int((status[picked] == "timeout").sum()),
                     "p50_ms": _ms(h, 50), "p90_ms": _ms(h, 90), "p99_ms": _ms(h, 99),
                     "p999_ms": _ms(h, 99.9),
                     "lag_p99_ms": None if lag_max is None else min(_ms(_hist(due), 99),
                                                                     lag_max),
                     "lag_max_ms": lag_max})
    folder.write_intervals(rows)

    mean_us = hist["latency"].mean
    phases = {name: _phase_summary(hist[name], mean_us) for name in
              ("schedule_lag", "client_queue", "send", "wait", "receive", "network")}
    if spec.server:
        phases.update({name: _phase_summary(hist[name], mean_us)
                       for name in (*fractions, "total")})
    misses = int(np.count_nonzero(query_us > spec.deadline_ms * 1e3))
    errors, timeouts = int((status == "error").sum()), int((status == "timeout").sum())
    duration_s = n / spec.rate_per_s
    summary: dict[str, Any] = {
        "schema": "modelcaliper.run/1", "run_id": spec.run_id,
        "target": {"url": "http://127.0.0.1:8501", "protocol": "v2-rest", "model": spec.model,
                   "version": spec.version},
        "load": {"arrival": "poisson", "offered_rps": spec.rate_per_s, "duration_s": duration_s,
                 "batch_size": spec.batch_size, "candidates": spec.candidates,
                 "offered_qps": spec.rate_per_s / per_query, "warmup_s": 0.0,
                 "settings": {"rate_per_s": spec.rate_per_s / per_query, "seed": spec.seed}},
        "requests": {"scheduled": n, "sent": n, "ok": int(ok.sum()), "errors": errors,
                     "timeouts": timeouts, "dropped": 0, "cancelled": 0, "model_errors": 0,
                     "warmup": 0},
        "throughput": {"achieved_rps": spec.rate_per_s, "ok_rps": ok.sum() / duration_s,
                       "rows_per_s": ok.sum() * spec.batch_size / duration_s,
                       "window_s": duration_s},
        "latency_ms": _latency_summary(hist["latency"]),
        "latency_ok_ms": _latency_summary(hist["latency_ok"]),
        "phases_ms": phases,
        "queries": {"count": queries, "ok": queries, "deadline_ms": spec.deadline_ms,
                    "deadline_misses": misses,
                    "latency_ms": _latency_summary(hist["query_latency"])},
        "payload_bytes": {"request_mean": 4096.0, "response_mean": 512.0},
        "errors_by_kind": {k: v for k, v in (("http_503", errors), ("timeout", timeouts)) if v},
        "error_examples": {k: v for k, v in (("http_503", [spec.error_text]),
                                             ("timeout", ["no answer within 10 s"]))
                           if (errors if k == "http_503" else timeouts)},
        "generator": {"schedule_lag_ms": {"p50": _ms(hist["schedule_lag"], 50),
                                          "p99": _ms(hist["schedule_lag"], 99),
                                          "max": hist["schedule_lag"].max / 1e3},
                      "cpu_percent": 12.5, "saturated": False, "message": None},
        "confidence": {"p99_ms": {"estimate": _ms(hist["latency"], 99), "low": None,
                                  "high": None, "level": 0.95, "n": n, "method": "normal"}},
        "pool": {"encoding": "v2-json", "compression": "none", "transport": "http",
                 "units": 64, "requests": 256, "size_bytes": 256 * 4096,
                 "mean_request_bytes": 4096.0, "build_s": 0.125},
        "interrupted": False, "started_at": spec.started_at,
    }
    if spec.server:
        before, after, diff = _server_metrics(server_total_us / 1e3)
        folder.write_server_metrics(before, after, diff)
        total = hist["total"]
        summary["server_metrics"] = {
            "available": True, "url": "http://127.0.0.1:8501/metrics", "window_s": duration_s,
            "histograms": {"phases_ms": [{"metric": "caliper_server_phase_seconds",
                                          "labels": {"phase": "total"}, "count": total.count,
                                          "mean": total.mean / 1e3, "p50": _ms(total, 50),
                                          "p90": _ms(total, 90), "p99": _ms(total, 99)}]},
            "resets": []}
    folder.write_summary(summary)
    folder.write_spec({"model": spec.model, "rate_per_s": spec.rate_per_s,
                       "batch_size": spec.batch_size, "candidates": spec.candidates,
                       "deadline_ms": spec.deadline_ms, "seed": spec.seed})
    folder.write_environment({"host": {"hostname": "bench-1", "cpu_count": 2},
                              "python": {"version": "3.11.7"},
                              "versions": {"modelcaliper": "0.1.0"},
                              "seeds": {"seed": spec.seed}})
    if spec.profile:
        ops = [{"name": f"model/dense_{i}/MatMul", "op_type": "MatMul", "group": "dense",
                "scope": f"model/dense_{i}", "calls": 100, "total_us": 900.0 - i * 100,
                "self_us": 900.0 - i * 100, "mean_us": 9.0 - i, "share": (9 - i) / 45}
               for i in range(9)]
        (folder.profile_dir / "profile.json").write_bytes(orjson.dumps({
            "format": "modelcaliper.profile/1", "status": "ok", "runtime": "onnxruntime",
            "summary": {"total_us": 4500.0, "groups": [{"group": "dense", "self_us": 4500.0,
                                                        "share": 1.0, "ops": 9}],
                        "top_group": "dense", "top": []},
            "ops": ops}))
    folder.finish("completed")
    return folder


def seed_store(root: Path, specs: list[Seeded],
               assertions: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    """Write ``specs`` under ``root`` and index them in ``root/caliper.db``; the db's path."""
    database = root / "caliper.db"
    with Store(database) as store:
        for spec in specs:
            folder = write_seeded_run(root, spec)
            store.save_run(folder, tags=list(spec.tags),
                           assertions=(assertions or {}).get(spec.run_id))
    return database


# The runs most tests use: a baseline, a faster candidate, a hostile one.
BASELINE = Seeded("20261127-041500-ranker-aaaaaa", version="1", seed=1, tags=("nightly",))
FASTER = Seeded("20261128-041500-ranker-bbbbbb", version="2", seed=2, scale_ms=5.0,
                started_at="2026-11-28T04:15:00.000Z", tags=("nightly", "ci"))
HOSTILE = Seeded("20261129-041500-hostile-cccccc", model=HOSTILE_MODEL, version="<b>9</b>",
                 seed=3, requests=500, error_rate=0.2, error_text=HOSTILE_ERROR,
                 started_at="2026-11-29T04:15:00.000Z", server=False, profile=False,
                 tags=("<i>tag</i>",))
