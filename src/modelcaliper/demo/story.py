"""``caliper demo``: one ranking model in two versions, the same bursty traffic, what changed.

The story, start to finish (``run_demo``):

1. generate the training data (``demo.data``) and build the two model versions
   (``demo.model``), both cached under ``<out>/artifacts/<profile>/`` and rebuilt only when
   missing or when the data or builder changed;
2. run each version the way ``caliper run`` does (``modelcaliper.run``): the embedded
   server on free local ports, pinned apart from the load generator, and the same schedule
   for both — bursty query arrivals, 1 000 candidates per query fanned out in requests of
   25, a 250 ms deadline per query;
3. print both summaries, then what changed between them: query latency, deadline misses,
   and the share of the server's compute spent in the feature transform;
4. each run is stored as ``caliper run`` stores it — a run folder ``<runs>/<run_id>/``
   indexed in ``<runs>/caliper.db``, tagged ``demo`` and ``v1``/``v2`` — and the
   comparison goes to ``<out>/latest.json``; the last lines say where to look.

The query rate is chosen for a 2-core machine: comfortable for version 2, while version 1's
unvectorized transform makes nearly every query miss its deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelcaliper.demo.data import FeatureLayout, write_dataset
from modelcaliper.demo.model import (
    MODEL_NAME,
    BuildReport,
    TrainConfig,
    build_models,
    is_built,
)
from modelcaliper.errors import UsageError

__all__ = ["DemoSettings", "compare", "prepare_artifacts", "render_comparison", "run_demo"]

DATA_VERSION = "1"
"""Bumped whenever the data generator changes, so cached data is regenerated."""

VERSION_LABELS = {1: "v1, unvectorized transform", 2: "v2, vectorized transform"}


@dataclass(frozen=True)
class DemoSettings:
    """Everything one demo run does; ``quick()`` is the short profile (tests, smoke checks)."""

    profile: str = "full"
    queries: int = 60
    """Queries of training data (each ``candidates`` rows)."""
    candidates: int = 1000
    batch_size: int = 25
    deadline_s: float = 0.25
    rate_qps: float = 0.8
    """Mean query rate of the bursty arrivals."""
    burst_multiplier: float = 4.0
    burst_duration_s: float = 1.5
    calm_duration_s: float = 4.0
    duration_s: float = 20.0
    warmup_s: float = 2.0
    pool_queries: int = 12
    """Distinct queries encoded for the run (reused round-robin)."""
    protocol: str = "tfserving-grpc"
    seed: int = 7
    train: TrainConfig = TrainConfig()
    layout: FeatureLayout = FeatureLayout()

    @classmethod
    def quick(cls) -> DemoSettings:
        """A demo that fits a smoke test: less data, shorter training, 5-second runs."""
        return cls(profile="quick", queries=12, duration_s=5.0, warmup_s=1.0, pool_queries=4,
                   train=replace(TrainConfig(), epochs=1))


@dataclass(frozen=True)
class Artifacts:
    """The cached inputs of the demo: the data file and the model base path."""

    data_path: Path
    base_path: Path
    rows: int
    positive_rate: float
    data_cached: bool
    model: BuildReport


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def prepare_artifacts(artifacts_dir: str | Path, settings: DemoSettings, *,
                      rebuild: bool = False, say: Callable[[str], None] = _say) -> Artifacts:
    """Generate the data and build both model versions, reusing what is already there."""
    out = Path(artifacts_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_path, stamp_path = out / "train.parquet", out / "data.json"
    stamp = json.loads(json.dumps({"generator": DATA_VERSION, "layout": asdict(settings.layout),
                                   "queries": settings.queries,
                                   "candidates": settings.candidates, "seed": settings.seed}))
    previous = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    data_cached = (not rebuild and data_path.is_file()
                   and {k: previous.get(k) for k in stamp} == stamp)
    if data_cached:
        rows, rate = int(previous["rows"]), float(previous["positive_rate"])
        say(f"data    {data_path} (cached: {settings.queries} queries × {settings.candidates} "
            f"candidates)")
    else:
        report = write_dataset(data_path, settings.layout, queries=settings.queries,
                               candidates=settings.candidates, seed=settings.seed)
        rows, rate = report.rows, report.positive_rate
        stamp_path.write_text(json.dumps({**stamp, "rows": rows, "positive_rate": rate}))
        say(f"data    {data_path}: {settings.queries} queries × {settings.candidates} candidates, "
            f"{100 * rate:.1f}% clicked, written in {report.build_s:.1f} s")
    if rebuild or not is_built(out, data_path, settings.layout, settings.train):
        log_path = out / "ranker.build.log"
        say(f"model   training and exporting versions 1 and 2 (log: {log_path}) ...")
        with _stderr_to(log_path):
            model = build_models(out, data_path, settings.layout, settings.train, force=True)
    else:
        model = build_models(out, data_path, settings.layout, settings.train)
    how = "cached" if model.cached else f"built in {model.build_s:.0f} s"
    say(f"model   {model.base_path}/{{1,2}} ({how}): AUC {model.auc:.3f} on held-out queries, "
        f"accuracy {100 * model.accuracy:.1f}% (clicks {100 * model.positive_rate:.1f}%)")
    return Artifacts(data_path, model.base_path, rows, rate, data_cached, model)


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 to ``path``: TensorFlow's native start-up chatter included."""
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.dup2(target, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


# ---------------------------------------------------------------------- one version's run


def _run_version(version: int, artifacts: Artifacts, settings: DemoSettings, runs_dir: Path,
                 db_path: Path, say: Callable[[str], None], progress: bool) -> dict[str, Any]:
    """One ``caliper run`` of ``version`` on the embedded server; its stored summary."""
    from modelcaliper.api import run
    from modelcaliper.targets.affinity import plan_cpus

    # One TensorFlow thread per server CPU (the run pins the server to the last half of the
    # CPUs, the generator to the rest): more threads than cores only add hand-offs.
    threads = len(plan_cpus().server_cpus) or os.cpu_count() or 1
    say(f"{VERSION_LABELS[version]}: serving it and sending bursty queries around "
        f"{settings.rate_qps:g}/s for {settings.warmup_s + settings.duration_s:g} s ...")
    return run(
        artifacts.base_path, model_version=str(version), model_name=MODEL_NAME,
        protocol=settings.protocol,
        server_args=f"--max-queued-requests 0 --intra-op-threads {threads} "
                    f"--inter-op-threads {threads}",
        data=artifacts.data_path, group_by="query_id",
        rows=settings.pool_queries * settings.candidates,
        arrival="bursty", rps=settings.rate_qps, burst_multiplier=settings.burst_multiplier,
        burst_duration=f"{settings.burst_duration_s:g}s",
        calm_duration=f"{settings.calm_duration_s:g}s",
        duration=f"{settings.duration_s:g}s", warmup=f"{settings.warmup_s:g}s",
        candidates=settings.candidates, batch_size=settings.batch_size,
        deadline=f"{settings.deadline_s * 1e3:g}ms", connections=4,
        seed=settings.seed, data_seed=settings.seed,
        tags=["demo", f"v{version}"], runs_dir=str(runs_dir), db=str(db_path),
        profile=True, progress=progress)


def _write_html_report(out: Path, run_dirs: Mapping[int, Path], db: Path) -> Path | None:
    """``<out>/report.html``: every demo run (charts, phases, op profile) and, with both
    versions, v2 compared against v1 — what ``caliper report V1 V2 --html`` writes."""
    from modelcaliper.report.compare import compare_view
    from modelcaliper.report.data import run_view
    from modelcaliper.report.html import render_report
    from modelcaliper.report.sources import resolve_runs
    from modelcaliper.store._files import atomic_write

    if not run_dirs:
        return None
    runs = resolve_runs([str(run_dirs[v]) for v in sorted(run_dirs)], db)
    views = [run_view(folder, stored) for folder, stored in runs]
    page = render_report(views, compare_view(runs) if len(runs) > 1 else None)
    path = out / "report.html"
    atomic_write(path, page.encode("utf-8"))
    return path


def _settings_dict(settings: DemoSettings) -> dict[str, Any]:
    return {k: v for k, v in asdict(settings).items() if k not in ("layout", "train")}


# ---------------------------------------------------------------------- what changed


def _get(summary: Mapping[str, Any], *keys: str) -> float | None:
    value: Any = summary
    for key in keys:
        if not isinstance(value, Mapping) or value.get(key) is None:
            return None
        value = value[key]
    return float(value)


def _miss_rate(summary: Mapping[str, Any]) -> float | None:
    queries = summary.get("queries") or {}
    if not queries.get("count") or queries.get("deadline_misses") is None:
        return None
    return float(queries["deadline_misses"]) / float(queries["count"])


def _transform_share(summary: Mapping[str, Any]) -> float | None:
    transform = _get(summary, "phases_ms", "transform", "mean")
    compute = _get(summary, "phases_ms", "compute", "mean")
    return transform / compute if transform is not None and compute else None


def _profiled_share(summary: Mapping[str, Any], group: str) -> float | None:
    """The share of op time the under-load op profile puts in ``group``."""
    profile = summary.get("profile") or {}
    if profile.get("status") != "ok":
        return None
    return next((float(g["share"]) for g in profile.get("groups") or ()
                 if g.get("group") == group), 0.0)


METRICS: tuple[tuple[str, str, Callable[[Mapping[str, Any]], float | None]], ...] = (
    ("query p50", "ms", lambda s: _get(s, "queries", "latency_ms", "p50")),
    ("query p99", "ms", lambda s: _get(s, "queries", "latency_ms", "p99")),
    ("deadline misses", "%", lambda s: None if (r := _miss_rate(s)) is None else 100 * r),
    ("request p50", "ms", lambda s: _get(s, "latency_ms", "p50")),
    ("request p99", "ms", lambda s: _get(s, "latency_ms", "p99")),
    ("server queue mean", "ms", lambda s: _get(s, "phases_ms", "queue", "mean")),
    ("transform mean", "ms", lambda s: _get(s, "phases_ms", "transform", "mean")),
    ("model mean", "ms", lambda s: _get(s, "phases_ms", "model", "mean")),
    ("transform share", "%", lambda s: None if (r := _transform_share(s)) is None else 100 * r),
    ("transform ops (profile)", "%",
     lambda s: None if (r := _profiled_share(s, "transform")) is None else 100 * r),
    ("ok requests/s", "/s", lambda s: _get(s, "throughput", "ok_rps")),
)
"""The lines of "what changed": label, unit, how to read it from a summary."""


def compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric of ``METRICS``: its value before and after, and their ratio."""
    rows = []
    for label, unit, read in METRICS:
        old, new = read(before), read(after)
        ratio = old / new if old is not None and new else None
        rows.append({"metric": label, "unit": unit, "v1": old, "v2": new, "ratio": ratio})
    return rows


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.1f}%"
    text = f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return text + ("" if unit == "/s" else f" {unit}")


def render_comparison(rows: list[dict[str, Any]], deadline_ms: float) -> str:
    """The "what changed" table: v1 → v2 per metric, with the speed-up where it applies."""
    lines = [f"what changed, v1 → v2 (same schedule, deadline {deadline_ms:g} ms per query)"]
    for row in rows:
        change = ""
        if row["ratio"] is not None and row["unit"] == "ms" and row["ratio"] > 0:
            change = f"{row['ratio']:.1f}× faster" if row["ratio"] >= 1 else \
                f"{1 / row['ratio']:.1f}× slower"
        lines.append(f"  {row['metric']:<18}{_fmt(row['v1'], row['unit']):>12} → "
                     f"{_fmt(row['v2'], row['unit']):<12}{change}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- the whole demo


def run_demo(out_dir: str | Path = "runs/demo", settings: DemoSettings | None = None, *,
             runs_dir: str | Path = "runs", db_path: str | Path | None = None,
             rebuild: bool = False, progress: bool = True,
             say: Callable[[str], None] = _say) -> dict[str, Any]:
    """Build (or reuse) the artifacts, run and store both versions, print what changed."""
    from modelcaliper.cli.run import profile_lines
    from modelcaliper.load.summary import render_summary

    settings = settings or DemoSettings()
    if settings.rate_qps <= 0 or settings.duration_s <= 0:
        raise UsageError(f"the demo needs a query rate and a duration > 0, got "
                         f"{settings.rate_qps} and {settings.duration_s}")
    out, runs = Path(out_dir), Path(runs_dir)
    db = Path(db_path) if db_path is not None else runs / "caliper.db"
    started_s = time.perf_counter()
    artifacts = prepare_artifacts(out / "artifacts" / settings.profile, settings,
                                  rebuild=rebuild, say=say)
    summaries: dict[int, dict[str, Any]] = {}
    run_dirs: dict[int, Path] = {}
    for version in (1, 2):
        summaries[version] = _run_version(version, artifacts, settings, runs, db, say,
                                          progress)
        run_dirs[version] = Path(summaries[version]["folder"])
        sys.stdout.write(f"\n== {VERSION_LABELS[version]}\n")
        sys.stdout.write(render_summary(summaries[version]))
        sys.stdout.write("".join(f"{line}\n" for line in profile_lines(summaries[version])))
        sys.stdout.flush()
        if summaries[version]["interrupted"]:
            break
    rows = compare(summaries[1], summaries[2]) if len(summaries) == 2 else []
    if rows:
        sys.stdout.write("\n" + render_comparison(rows, settings.deadline_s * 1e3))
    report = {
        "schema": "modelcaliper.demo/1",
        "settings": _settings_dict(settings),
        "artifacts": {"data": str(artifacts.data_path), "model": str(artifacts.base_path),
                      "auc": artifacts.model.auc, "accuracy": artifacts.model.accuracy},
        "runs": {f"v{v}": {"run_id": summaries[v]["run_id"], "dir": str(d)}
                 for v, d in run_dirs.items()},
        "database": str(db),
        "what_changed": rows,
        "interrupted": any(s["interrupted"] for s in summaries.values()),
        "failed": [f"v{v}" for v, s in summaries.items() if s.get("status") == "failed"
                   or (s["requests"]["scheduled"] and not s["requests"]["ok"])],
        "elapsed_s": time.perf_counter() - started_s,
    }
    html_path = _write_html_report(out, run_dirs, db)
    report["report_html"] = str(html_path) if html_path is not None else None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    report_path = out / f"{stamp}-demo.json"
    for path in (report_path, out / "latest.json"):
        path.write_text(json.dumps(report, indent=2))
    sys.stdout.write(
        "\nwhere to look\n"
        + (f"  {html_path}   the report: both runs and their comparison, one file for "
           f"any browser\n" if html_path is not None else "")
        + f"  {report_path}   the comparison above, as JSON\n"
        + "".join(f"  {d}/   {VERSION_LABELS[v]}: summary.json, requests.parquet, "
                  f"queries.parquet, histograms/, logs/server.log\n"
                  for v, d in run_dirs.items())
        + f"  {db}   both runs indexed (tags demo, v1, v2)\n"
        + f"  {artifacts.base_path}/   the two SavedModels (caliper serve-model "
          f"{artifacts.base_path} --version 1)\n"
        + f"  {artifacts.data_path}   the training data (caliper run --data)\n")
    sys.stdout.flush()
    say(f"demo finished in {report['elapsed_s']:.0f} s")
    return report
