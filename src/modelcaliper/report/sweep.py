"""The Sweep view: a ``sweep.json`` document turned into what the sweep page draws and lists.

``sweep_view(document, stored_runs=...)`` is pure: it reads only the document (see
``sweep/document.py``) and, for links, the ids of the runs the store holds. It gives

    sweep            id, status, model, target, link, unit, SLO, watched percentile, notes
    recommendation   the headline, met or not, the ranked table (a why per row), closest
    slo_lines        latency SLOs as horizontal lines: {metric, threshold_ms, expression}
    batch            p50 and p99 against batch size, one pair of series per wire (protocol,
                     encoding, compression) — and per server setting and rate when those vary
    curves           the watched latency against achieved throughput, one series per
                     configuration, in the order of the offered rate
    bars             per configuration: request bytes (per request, or per candidate when the
                     batch size varies) and client CPU per candidate (encode, send + receive)
    points           every run in run order, failed ones marked, with the id to link to
    capacity         each capacity search: capacity, bracket, knee, steps
    timing           wall time, runs, server starts, load measured against planned, saved

Values a chart cannot place (a failed run has no latency) are ``None``; each series says how
many points it has, so a page (and its tests) can check that every one was drawn.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["read_sweep", "sweep_summary", "sweep_view"]

_SERIES_PERCENTILES = (("p50", "p50_ms"), ("p99", "p99_ms"))
_TIMING = ("wall_s", "runs", "server_starts", "max_load_s", "measured_load_s",
           "early_stop_saved_s", "stopped_early")


def _number(value: Any) -> float | None:
    """A finite number, else None (JSON has no NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _rate_text(rate: Any, unit: str) -> str:
    value = _number(rate)
    return "auto" if value is None else f"{value:.4g} {unit}"


def _per(value: Any, count: Any) -> float | None:
    value, count = _number(value), _number(count)
    if value is None or not count:
        return None
    return value / count


def _latency_slos(slo: Sequence[str]) -> list[dict[str, Any]]:
    """The SLOs that bound a latency, with their thresholds in ms (others are skipped)."""
    from modelcaliper.assertions import parse_assertion
    from modelcaliper.errors import UsageError

    lines = []
    for expression in slo:
        try:
            assertion = parse_assertion(str(expression))
        except UsageError:
            continue
        if assertion.metric.kind == "latency":
            lines.append({"metric": assertion.metric.name, "threshold_ms": assertion.threshold,
                          "expression": assertion.expression})
    return lines


def _config_order(config: Mapping[str, Any]) -> tuple[Any, ...]:
    """Configurations in a reading order: protocol, encoding, compression, batch, server."""
    server = config.get("server") or {}
    return (str(config.get("protocol") or ""), str(config.get("encoding") or ""),
            str(config.get("compression") or ""), _number(config.get("batch_size")) or 0,
            tuple(sorted((str(k), _number(v) or 0) for k, v in server.items())))


def _wire_label(config: Mapping[str, Any]) -> str:
    compression = config.get("compression")
    parts = [config.get("protocol"), config.get("encoding"),
             None if compression in (None, "none") else compression]
    return " ".join(str(p) for p in parts if p)


def _server_label(server: Mapping[str, Any]) -> str:
    return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in sorted(server.items()))


def _failed_text(point: Mapping[str, Any]) -> str:
    """Why a run did not hold: the SLOs it failed, or why the run failed."""
    if point.get("status") == "failed":
        return f"run failed: {point['reason']}" if point.get("reason") else "run failed"
    if point.get("status") == "interrupted":
        return "interrupted"
    failed = [str(v.get("expression")) for v in point.get("verdicts") or []
              if not v.get("passed")]
    if failed:
        return "fails " + ", ".join(failed)
    return "errors" if point.get("passed") is False else ""


def _recommendation(document: Mapping[str, Any], unit: str) -> dict[str, Any]:
    record = document.get("recommendation") or {}
    best = record.get("best") or {}
    rows = []
    for row in record.get("ranked") or []:
        rows.append({**row, "best": bool(best) and row.get("key") == best.get("key"),
                     "sustainable": _rate_text(row["sustainable_rps"], unit)
                     if _number(row.get("sustainable_rps")) is not None else "none"})
    return {"met": bool(record.get("met")), "headline": record.get("headline") or "",
            "best": record.get("best"), "closest": record.get("closest"),
            "required_rps": record.get("required_rps"), "ranked": rows}


def _batch_chart(document: Mapping[str, Any], points: Sequence[Mapping[str, Any]]
                 ) -> dict[str, Any]:
    """p50 and p99 against batch size: a pair of series per wire (and server, rate)."""
    axes = document.get("axes") or {}
    auto = document.get("search") is not None
    servers_vary = any(len(v) > 1 for v in (axes.get("server") or {}).values())
    rates_vary = not auto and len(axes.get("rps") or []) > 1
    unit = str(document.get("unit") or "req/s")
    chosen: list[Mapping[str, Any]]
    if auto:
        # With a capacity search each configuration ran at many rates: show the one it held at.
        held = {(c.get("at") or {}).get("run_id") for c in document.get("configs") or []}
        chosen = [p for p in points if p.get("run_id") is not None and p["run_id"] in held]
    else:
        chosen = list(points)
    batch_sizes = sorted({int(p["config"]["batch_size"]) for p in points
                          if _number((p.get("config") or {}).get("batch_size")) is not None})
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for point in sorted(points, key=lambda p: _config_order(p.get("config") or {})):
        config = point.get("config") or {}
        server = config.get("server") or {}
        key = (_wire_label(config), _server_label(server) if servers_vary else "",
               config.get("rps") if rates_vary else None)
        if key not in groups:
            label = " + ".join(part for part in key[:2] if part)
            if rates_vary:
                label += f" @ {_rate_text(config.get('rps'), unit)}"
            groups[key] = {"label": label, "values": {}}
    for point in chosen:
        config = point.get("config") or {}
        server = config.get("server") or {}
        key = (_wire_label(config), _server_label(server) if servers_vary else "",
               config.get("rps") if rates_vary else None)
        figures = point.get("figures") or {}
        groups[key]["values"][config.get("batch_size")] = figures
    series = []
    for index, group in enumerate(groups.values()):
        for name, field in _SERIES_PERCENTILES:
            values = [_number((group["values"].get(b) or {}).get(field)) for b in batch_sizes]
            series.append({"label": f"{group['label']} {name}", "group": index,
                           "percentile": name, "values": values,
                           "points": sum(v is not None for v in values)})
    basis = ("each configuration at the highest rate it held" if auto
             else f"at {_rate_text((axes.get('rps') or [None])[0], unit)}" if not rates_vary
             else "one series per rate")
    return {"batch_sizes": batch_sizes, "series": series, "basis": basis,
            "drawable": len(batch_sizes) > 1 and any(s["points"] for s in series)}


def _curves(document: Mapping[str, Any]) -> dict[str, Any]:
    """The watched latency against achieved throughput, one series per configuration."""
    series = []
    configs = sorted(document.get("configs") or [],
                     key=lambda c: _config_order(c.get("config") or {}))
    for index, config in enumerate(configs):
        xs: list[float] = []
        ys: list[float] = []
        missing = 0
        for step in sorted(config.get("curve") or [],
                           key=lambda s: _number(s.get("rate_per_s")) or 0.0):
            x, y = _number(step.get("throughput_per_s")), _number(step.get("latency_ms"))
            if x is None or y is None or y <= 0:
                missing += 1
                continue
            xs.append(x)
            ys.append(y)
        series.append({"label": config.get("label") or config.get("key"), "key": config["key"],
                       "index": index, "throughput": xs, "latency_ms": ys, "points": len(xs),
                       "not_drawn": missing})
    return {"series": series, "drawable": any(s["points"] for s in series)}


def _bars(document: Mapping[str, Any], points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per configuration: bytes of a request and the client's CPU per candidate."""
    configs = sorted(document.get("configs") or [],
                     key=lambda c: _config_order(c.get("config") or {}))
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for point in points:
        by_key.setdefault(str(point.get("config_key")), []).append(point)
    batch_sizes = {(c.get("config") or {}).get("batch_size") for c in configs}
    per_candidate = len(batch_sizes) > 1
    rows = []
    for config in configs:
        figures = next((p.get("figures") or {} for p in by_key.get(config["key"], [])
                        if (p.get("figures") or {}).get("request_bytes") is not None), {})
        rows_per_request = _number(figures.get("rows_per_request")) or \
            _number((config.get("config") or {}).get("batch_size"))
        request_bytes = _number(figures.get("request_bytes"))
        rows.append({
            "label": config.get("label") or config.get("key"), "key": config["key"],
            "request_bytes": request_bytes,
            "request_bytes_per_candidate": _per(request_bytes, rows_per_request),
            "response_bytes": _number(figures.get("response_bytes")),
            "link_bytes_up_per_request": _number(figures.get("link_bytes_up_per_request")),
            "client_cpu_us_per_candidate": _number(config.get("client_cpu_us_per_candidate")),
            "encode_us_per_candidate": _per(figures.get("encode_us_per_request"),
                                            rows_per_request),
            "send_receive_us_per_candidate": _per(figures.get("send_receive_us_per_request"),
                                                  rows_per_request),
            "server_cpu_us_per_candidate": _number(config.get("server_cpu_us_per_candidate")),
        })
    shown = "request_bytes_per_candidate" if per_candidate else "request_bytes"
    return {"rows": rows, "labels": [r["label"] for r in rows], "bytes_field": shown,
            "bytes_per": "candidate" if per_candidate else "request",
            "bytes": [r[shown] for r in rows],
            "cpu_total": [r["client_cpu_us_per_candidate"] for r in rows],
            "cpu_encode": [r["encode_us_per_candidate"] for r in rows],
            "bytes_drawable": any(v is not None for v in (r[shown] for r in rows)),
            "cpu_drawable": any(r["client_cpu_us_per_candidate"] is not None for r in rows)}


def _point_rows(points: Sequence[Mapping[str, Any]], unit: str, fanout: bool,
                stored: Collection[str] | None) -> list[dict[str, Any]]:
    rows = []
    for position, point in enumerate(points):
        figures = point.get("figures") or {}
        early = point.get("early_stop") or {}
        run_id = point.get("run_id")
        rows.append({
            "position": position + 1, "label": point.get("label"),
            "rate": _rate_text((point.get("config") or {}).get("rps"), unit),
            "search_step": point.get("search_step"), "status": point.get("status"),
            "reason": point.get("reason"), "passed": point.get("passed"),
            "failed": _failed_text(point),
            "p50_ms": _number(figures.get("p50_ms")), "p99_ms": _number(figures.get("p99_ms")),
            "watched_ms": _number(figures.get("watched_ms")),
            "throughput_per_s": _number(figures.get("queries_per_s" if fanout else "ok_rps")),
            "error_rate": _number(figures.get("error_rate")),
            "deadline_miss_rate": _number(figures.get("deadline_miss_rate")),
            "request_bytes": _number(figures.get("request_bytes")),
            "client_cpu_us_per_candidate": _number(figures.get("client_cpu_us_per_candidate")),
            "server_cpu_us_per_candidate": _number(figures.get("server_cpu_us_per_candidate")),
            "stopped_early": bool(early.get("stopped_early")),
            "early_reason": early.get("reason"),
            "measured_s": _number(early.get("measured_s")), "max_s": _number(early.get("max_s")),
            "run_id": run_id,
            "linked": run_id is not None and stored is not None and run_id in stored,
        })
    return rows


def _capacity_rows(document: Mapping[str, Any], unit: str) -> list[dict[str, Any]]:
    rows = []
    for config in document.get("configs") or []:
        capacity = config.get("capacity")
        if not capacity:
            continue
        knee = capacity.get("knee") or {}
        rows.append({"label": config.get("label"),
                     "capacity": _rate_text(capacity.get("capacity_rps"), unit)
                     if _number(capacity.get("capacity_rps")) is not None else "none",
                     "low": _number(capacity.get("low_rps")),
                     "high": _number(capacity.get("high_rps")),
                     "knee": _rate_text(knee.get("rate_per_s"), unit) if knee else None,
                     "steps": len(capacity.get("steps") or []),
                     "reason": capacity.get("reason")})
    return rows


def sweep_summary(document: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the sweep list: id, status, model, when, how many runs, the headline."""
    model = document.get("model") or {}
    timing = document.get("timing") or {}
    recommendation = document.get("recommendation") or {}
    return {"sweep_id": document.get("sweep_id"), "status": document.get("status"),
            "started_at": document.get("started_at"),
            "model": model.get("name") or _model_name(model),
            "model_version": model.get("version"),
            "runs": len(document.get("points") or []),
            "configs": len(document.get("configs") or []),
            "wall_s": _number(document.get("wall_s")),
            "saved_s": _number(timing.get("early_stop_saved_s")),
            "slo": list(document.get("slo") or []), "met": bool(recommendation.get("met")),
            "headline": recommendation.get("headline") or ""}


def _model_name(model: Mapping[str, Any]) -> str | None:
    path = model.get("path")
    if not path:
        return None
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def sweep_view(document: Mapping[str, Any], *,
               stored_runs: Collection[str] | None = None) -> dict[str, Any]:
    """The Sweep view of a ``sweep.json`` document (see the module docstring).

    ``stored_runs`` holds the ids of the runs the store has (each point links to its run
    page when its id is in it); None links none, as in the offline report.
    """
    from modelcaliper.errors import UsageError

    if not isinstance(document, Mapping) or not str(document.get("schema", "")).startswith(
            "modelcaliper.sweep/"):
        raise UsageError("not a sweep document (no 'schema': 'modelcaliper.sweep/1'); give "
                         "the sweep.json that caliper sweep wrote")
    unit = str(document.get("unit") or "req/s")
    fanout = bool(document.get("fanout"))
    points = [p for p in document.get("points") or [] if isinstance(p, Mapping)]
    watch = str(document.get("watch") or "p99")
    timing = {key: (document.get("timing") or {}).get(key) for key in _TIMING}
    model = document.get("model") or {}
    target = document.get("target") or {}
    link = document.get("link") or {}
    slo_lines = _latency_slos(document.get("slo") or [])
    failed = [p for p in points if p.get("status") == "failed"]
    return {
        "sweep": {**sweep_summary(document), "reason": document.get("reason"),
                  "updated_at": document.get("updated_at"), "model_path": model.get("path"),
                  "target": {"kind": target.get("kind"), "url": target.get("url")},
                  "link": {"rate": link.get("rate"), "delay": link.get("delay"),
                           "method": link.get("method")} if link else None,
                  "unit": unit, "fanout": fanout, "watch": watch,
                  "watch_label": watch.replace("query_", "query "),
                  "axes": {k: v for k, v in (document.get("axes") or {}).items()
                           if k in ("protocol", "encoding", "compression", "batch_size", "rps",
                                    "server")},
                  "notes": list(document.get("notes") or []),
                  "skipped": list(document.get("skipped") or []),
                  "search": document.get("search"), "failed_runs": len(failed)},
        "recommendation": _recommendation(document, unit),
        "slo_lines": slo_lines,
        "watch_slo_ms": next((s["threshold_ms"] for s in slo_lines if s["metric"] == watch),
                             None),
        "batch": _batch_chart(document, points),
        "curves": _curves(document),
        "bars": _bars(document, points),
        "points": _point_rows(points, unit, fanout, stored_runs),
        "capacity": _capacity_rows(document, unit),
        "timing": timing,
    }


def read_sweep(name: str, sweeps_dir: str | Path) -> dict[str, Any]:
    """The ``sweep.json`` named by ``name``: a file, a sweep folder, or a sweep id under
    ``sweeps_dir``; a one-line UsageError when there is none or it is not a sweep."""
    import orjson

    from modelcaliper.errors import UsageError
    from modelcaliper.store import check_run_id

    path = Path(name)
    if path.is_dir():
        path = path / "sweep.json"
    elif not path.is_file():
        try:
            check_run_id(name)
        except UsageError:
            raise UsageError(f"sweep {name!r} is not a sweep.json, a sweep folder nor a sweep "
                             "id") from None
        path = Path(sweeps_dir) / name / "sweep.json"
    try:
        document = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"sweep {name!r} was not found (no {path}); give its folder or "
                         "sweep.json, or --store next to its sweeps folder") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UsageError(f"{path} cannot be read as JSON: {exc}") from None
    if not isinstance(document, dict) or not str(document.get("schema", "")).startswith(
            "modelcaliper.sweep/"):
        raise UsageError(f"{path} is not a sweep document (no 'schema': "
                         "'modelcaliper.sweep/1'); give the sweep.json that caliper sweep "
                         "wrote")
    return document
