"""One ``caliper run``, phase by phase: the library behind the command and ``modelcaliper.run``.

    validate ─► pool ─► warm-up ─► load ─► profile ─► analyse ─► store ─► report

- **validate**: the spec was checked when it was built (``config.build_spec``); here the
  database is opened (a newer schema is refused), the run folder made and the target opened
  — started and awaited for an embedded or launched server, asked for the model's metadata
  in every case. Any failure until the load starts removes the folder, stops whatever was
  started and raises a one-line error (exit 2 for input errors): nothing is left behind.
- **pool**: rows (the dataset or synthetic), cut into model requests, encoded once. Data
  that does not fit the model fails here, still before any load.
- **warm-up** and **load**: one open-loop schedule (``load.workers.run_load``); warm-up is
  the time from the call to the end of the warm-up window, load the rest. The target's
  Prometheus metrics are scraped just before and just after (``metrics``). A server we
  started that dies mid-run stops the run at once (the live hook checks its process).
- **profile**: a hook, a no-op unless one is given.
- **analyse**: the summary (``modelcaliper.run/1``) with the target's facts, the server's
  own histograms, the assertions' verdicts, the run's status and ``phases_wall_s``.
- **store**: the run folder (``runs/<run_id>/``) and its row in the SQLite index; an
  interrupted or failed run is stored too, marked so, with its reason.
- **report**: the ``report`` callback (the terminal), then ``--json``, ``--hlog`` and
  ``--junit`` files. Its own wall time is added to the stored summary afterwards.

The target is closed in a ``finally``: a server we started never outlives the run.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelcaliper.assertions import Verdict, evaluate, write_junit
from modelcaliper.config import RunSpec
from modelcaliper.errors import TargetError
from modelcaliper.run_target import Monitor, down_reason, make_target, series_values, server_view

__all__ = ["PHASES", "ProgressSink", "RunOutcome", "execute"]

PHASES = ("validate", "pool", "warmup", "load", "metrics", "profile", "analyse", "store",
          "report")
"""Keys of ``summary.phases_wall_s``, in the order a run goes through them."""

_POOL_UNITS = 64  # units of data to encode by default (the pool is also capped by --pool-mb)
_MAX_DEFAULT_ROWS = 200_000


class ProgressSink:
    """What the runner tells a live display: the start, each live batch, the end."""

    def start(self, spec: RunSpec, plan: Any) -> None:
        """The load is about to start."""

    def update(self, batch: Any) -> bool | None:
        """A ``load.live.LiveBatch`` of records finished since the previous one.

        Returning True ends the load early; the run still counts as completed.
        """
        return None

    def finish(self) -> None:
        """The load is over (the final summary follows)."""


@dataclass
class RunOutcome:
    """How one run ended: its summary, verdicts, status, exit code and folder."""

    summary: dict[str, Any] | None
    verdicts: list[Verdict] = field(default_factory=list)
    status: str = "completed"
    reason: str | None = None
    exit_code: int = 0
    folder: Path | None = None
    result: Any = field(default=None, repr=False)
    """The load engine's ``RunResult`` (statistics, records), when the load ran."""


class _Clock:
    """Wall time per phase."""

    def __init__(self) -> None:
        self.wall_s: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        self.wall_s[name] = round(self.wall_s.get(name, 0.0) + max(0.0, seconds), 4)

    def ordered(self) -> dict[str, float]:
        return {name: self.wall_s[name] for name in PHASES if name in self.wall_s}


def _rows(spec: RunSpec, signature: Any) -> Any:
    """The run's rows, selected and mapped to the model's inputs (``workload.loader``)."""
    from modelcaliper.workload.loader import load_rows_from

    load = spec.load
    per_unit = load.candidates or load.batch_size
    rows = spec.rows or max(per_unit, min(per_unit * _POOL_UNITS, _MAX_DEFAULT_ROWS))
    return load_rows_from(spec.selection, signature, default_rows=rows,
                          synthetic_query_size=load.candidates or 100)


def _signature(spec: RunSpec, endpoint: Any) -> Any:
    if spec.signature_path:
        from modelcaliper.signature import load_signature_file

        return load_signature_file(spec.signature_path)
    if spec.model_path is not None and spec.target_kind != "embedded":
        from modelcaliper.server.runtimes import read_signature

        return read_signature(spec.model_path, version=spec.model_version)
    return endpoint.signature


def execute(spec: RunSpec, *, say: Callable[[str], None] | None = None,
            progress: ProgressSink | None = None,
            report: Callable[[RunOutcome], None] | None = None,
            profile: Callable[[Mapping[str, Any]], None] | None = None) -> RunOutcome:
    """Run every phase of one run (see the module docstring) and return how it ended."""
    from modelcaliper.store import RunFolder, Store

    tell = say or (lambda _text: None)
    clock = _Clock()
    with clock.phase("validate"):
        store = Store(spec.db_path) if spec.store else None
        try:
            folder = RunFolder(spec.runs_dir, model=spec.run_name) if spec.store else None
        except BaseException:
            if store is not None:
                store.close()
            raise
    try:
        outcome = _Run(spec, clock, tell, folder, store).go(progress, profile)
        summary = outcome.summary
        if folder is not None and store is not None:
            with clock.phase("store"):
                _store(spec, outcome, folder, store, finish=True)
        with clock.phase("report"):
            if summary is not None:
                summary["phases_wall_s"] = clock.ordered()
                _write_outputs(spec, outcome, sum(clock.wall_s.values()))
            if report is not None:
                report(outcome)
        if summary is not None:
            summary["phases_wall_s"] = clock.ordered()
            if folder is not None and store is not None:
                _store(spec, outcome, folder, store, finish=False)
        return outcome
    finally:
        if store is not None:
            store.close()


def _store(spec: RunSpec, outcome: RunOutcome, folder: Any, store: Any, *,
           finish: bool) -> None:
    """Write the summary and status into the folder and index it (again, to update it)."""
    if outcome.summary is not None:
        folder.write_summary(outcome.summary)
    if finish:
        folder.finish(outcome.status, outcome.reason)
    store.save_run(folder, tags=spec.tags, assertions=[v.to_dict() for v in outcome.verdicts],
                   model_version=spec.model_version, target_kind=spec.target_kind)


def _write_outputs(spec: RunSpec, outcome: RunOutcome, total_s: float) -> None:
    """The files the user asked for: ``--json FILE``, ``--hlog FILE``, ``--junit FILE``."""
    from modelcaliper.load.summary import write_latency_hlog, write_summary

    summary, result = outcome.summary, outcome.result
    assert summary is not None
    if spec.json_path and spec.json_path != "-":
        write_summary(summary, spec.json_path)
    if spec.hlog_path and result is not None:
        write_latency_hlog(result.stats, result.started_at_s, spec.hlog_path)
    if spec.junit_path:
        write_junit(spec.junit_path, outcome.verdicts, suite=f"caliper run {summary['run_id']}",
                    time_s=total_s, timestamp=summary["started_at"],
                    properties={"run_id": summary["run_id"],
                                "model": summary["target"].get("model"),
                                "status": outcome.status, "folder": summary.get("folder")})


class _Run:
    """The phases from opening the target to the analysed summary (one run's state)."""

    def __init__(self, spec: RunSpec, clock: _Clock, say: Callable[[str], None],
                 folder: Any, store: Any) -> None:
        self.spec, self.clock, self.say = spec, clock, say
        self.folder, self.store = folder, store
        self._profile: dict[str, Any] | None = None
        self._check: Any = None
        self._checker: Any = None
        self._profile_window = (0.0, 0.0)

    def _discard(self) -> None:
        """A run that failed before its load leaves no folder behind."""
        if self.folder is not None:
            shutil.rmtree(self.folder.path, ignore_errors=True)

    def go(self, progress: ProgressSink | None,
           profile: Callable[[Mapping[str, Any]], None] | None) -> RunOutcome:
        spec, clock = self.spec, self.clock
        log_dir = self.folder.logs_dir if self.folder is not None else None
        loaded = False
        try:
            with clock.phase("validate"):
                target = make_target(spec, log_dir)
                if spec.target_kind != "existing":
                    self.say(f"starting the {spec.target_kind} server ({spec.protocol}) ...")
                endpoint = target.open()
            try:
                with clock.phase("pool"):
                    pool, plan = self._pool(endpoint)
                loaded = True
                return self._load(target, endpoint, pool, plan, progress, profile)
            finally:
                target.close()
        except BaseException as exc:
            if not loaded:
                self._discard()
                if isinstance(exc, TargetError):
                    exc.exit_code = 2  # nothing was sent: an input error of this run
            elif self.folder is not None and self.store is not None:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                self.folder.finish("failed" if not isinstance(exc, KeyboardInterrupt)
                                   else "interrupted", reason)
                self.store.save_run(self.folder, tags=spec.tags,
                                    model_version=spec.model_version,
                                    target_kind=spec.target_kind)
            raise

    def _pool(self, endpoint: Any) -> tuple[Any, Any]:
        from modelcaliper.load.pool import build_pool, unit_requests

        spec = self.spec
        if endpoint.pid is not None:
            pinning = endpoint.pinning or {}
            where = (f" on CPU {pinning['server_cpus']}, generator on CPU "
                     f"{pinning['client_cpus']}" if pinning.get("server_cpus") else "")
            self.say(f"server pid {endpoint.pid} ready at {endpoint.url}{where}")
        signature = _signature(spec, endpoint)
        rows = _rows(spec, signature)
        for note in rows.notes:
            self.say(f"note: {note}")
        # With fan-out the rows already come as queries of K candidates; without it, a group
        # column keeps groups out of each other's requests.
        group_by = None if spec.load.candidates else rows.group_by if spec.group_by else None
        units = list(unit_requests(rows.columns, signature, batch_size=spec.load.batch_size,
                                   candidates=spec.load.candidates, model_name=endpoint.model,
                                   group_by=group_by))
        pool = build_pool(units, spec.encoding, spec.compression, spec.level, spec.pool_mb)
        if spec.check_outputs:
            self._check = self._answer_check(
                [r for unit in units for r in unit][:pool.request_count], signature)
        self.say(f"pool: {len(pool.units)} units, {pool.request_count} requests of "
                 f"{pool.mean_request_bytes:.0f} B mean ({spec.encoding}, {spec.compression}),"
                 f" built in {pool.build_s * 1e3:.0f} ms")
        return pool, spec.load.plan()

    def _answer_check(self, requests: list[Any], signature: Any) -> Any:
        """The driver's answer check of ``--check-outputs`` / ``--expect-model``."""
        from modelcaliper.load.answers import AnswerCheck
        from modelcaliper.workload.expected import OutputChecker

        spec = self.spec
        options = {"outputs": signature.outputs, "rtol": spec.rtol, "atol": spec.atol}
        if spec.expect_model:
            from modelcaliper.server.runtimes import open_runtime

            assert spec.model_path is not None  # build_spec refuses --expect-model without it
            runtime = open_runtime(spec.model_path, version=spec.model_version)
            started = time.perf_counter()
            checker = OutputChecker.from_model(requests, runtime.predict, **options)
            self.say(f"expected outputs: {len(requests)} requests predicted in-process in "
                     f"{(time.perf_counter() - started) * 1e3:.0f} ms")
        else:
            checker = OutputChecker(requests, **options)
        self._checker = checker
        return AnswerCheck(spec.encoding, checker)

    def _load(self, target: Any, endpoint: Any, pool: Any, plan: Any,
              progress: ProgressSink | None,
              profile: Callable[[Mapping[str, Any]], None] | None) -> RunOutcome:
        from modelcaliper.load.workers import TransportRecipe, run_load
        from modelcaliper.targets.prometheus import scrape, server_histograms, unavailable

        spec, clock, folder = self.spec, self.clock, self.folder
        metrics_url = (spec.metrics_url or endpoint.metrics_url) if spec.scrape_metrics else None
        with clock.phase("metrics"):
            before = scrape(metrics_url) if metrics_url else None
        records_dir = spec.records_dir or (folder.parts_dir if folder is not None else None)
        monitor = Monitor(target, progress)
        load = spec.load
        self.say(f"sending {len(plan.offsets_s)} {'queries' if load.fanout else 'requests'} to "
                 f"{endpoint.url} over {load.workers} worker(s); Ctrl-C stops early")
        if progress is not None:
            progress.start(spec, plan)
        capture = self._start_capture(endpoint)
        called_s = time.time()
        try:
            result = run_load(load, plan, pool, TransportRecipe(endpoint.protocol, endpoint.url,
                                                                load.connections, load.http2),
                              records_dir=records_dir, progress=monitor, check=self._check)
        finally:
            if capture is not None:
                capture.cancel()  # ends the window early if the load ended early
            if progress is not None:
                progress.finish()
        ended_s = time.time()
        warmup_end_s = min(max(result.started_at_s + load.warmup_s, called_s), ended_s)
        clock.add("warmup", warmup_end_s - called_s)
        clock.add("load", ended_s - warmup_end_s)
        with clock.phase("profile"):
            self._profile = self._finish_capture(capture)
            if profile is not None:
                profile({"spec": spec, "endpoint": endpoint, "target": target,
                         "result": result, "folder": folder})
        with clock.phase("metrics"):
            after = scrape(metrics_url) if metrics_url and before is not None else None
            if before is None or after is None:
                server = unavailable("--no-metrics" if not spec.scrape_metrics
                                     else "the target exposes no known metrics URL"
                                     if not metrics_url else "not scraped", metrics_url)
            else:
                server = server_histograms(before, after)
        down = down_reason(target, endpoint, monitor)
        with clock.phase("analyse"):
            outcome = self._analyse(result, plan, pool, endpoint, server, down,
                                    monitor.stopped_early)
        outcome.result = result
        if folder is not None:
            with clock.phase("store"):
                self._write_folder(result, before, after)
        return outcome

    def _start_capture(self, endpoint: Any) -> Any:
        """Start the op-profile window of ``--profile`` (a thread), or return None."""
        spec = self.spec
        if not spec.profile:
            return None
        from modelcaliper.profile.capture import BackgroundCapture, steady_window
        from modelcaliper.profile.grouping import Grouper, parse_group_flags

        out_dir = (self.folder.profile_dir if self.folder is not None
                   else Path(tempfile.mkdtemp(prefix="caliper-profile-")))
        delay_s, window_s = steady_window(spec.load.warmup_s, spec.load.duration_s)
        self._profile_window = (delay_s, window_s)
        grouper = Grouper(parse_group_flags(spec.profile_groups))
        options: dict[str, Any] = {}
        if spec.profiler_address:
            options["profiler_address"] = spec.profiler_address
            if spec.model_path is not None:
                options["model_path"] = spec.model_path
        return BackgroundCapture(endpoint, out_dir, delay_s=delay_s, duration_s=window_s,
                                 grouper=grouper, **options).start()

    def _finish_capture(self, capture: Any) -> dict[str, Any] | None:
        """The captured profile as the summary's ``profile`` entry (or why it is missing)."""
        if capture is None:
            return None
        from modelcaliper.profile.base import ProfileResult

        profile = capture.result(timeout_s=120)
        if not isinstance(profile, ProfileResult):
            self.say(f"op profile missing: {profile.reason}")
            return dict(profile.to_dict())
        delay_s, window_s = self._profile_window
        document = profile.to_dict(top_n=10)
        top_ops = [{"name": op.name, "type": op.op_type, "group": op.group,
                    "share": round(op.share, 6), "self_us": round(op.self_us, 3)}
                   for op in profile.ops[:10]]
        return {**document["summary"], "status": "ok", "runtime": profile.runtime,
                "window": f"{window_s:.1f} s from {delay_s:.1f} s after the start",
                "top_ops": top_ops, "trace_path": profile.trace_path,
                "raw_path": profile.raw_path}

    def _analyse(self, result: Any, plan: Any, pool: Any, endpoint: Any,
                 server: Mapping[str, Any], down: str | None,
                 stopped_early: bool = False) -> RunOutcome:
        from modelcaliper.load.summary import build_summary

        spec = self.spec
        facts = {**endpoint.describe(), "kind": spec.target_kind}
        if spec.model_version is not None:
            facts["version"] = spec.model_version
        summary = build_summary(result, spec.load, plan, target=facts, pool=pool,
                                run_id=self.folder.run_id if self.folder is not None else None)
        if self._profile is not None:
            summary["profile"] = self._profile
        if self._checker is not None:
            summary["model_checks"] = self._checker.summary()
        requests = summary["requests"]
        if stopped_early:  # the progress sink ended the load, not Ctrl-C
            summary["interrupted"] = False
            summary["stopped_early"] = True
        if down is not None:
            status, reason = "failed", down
        elif result.interrupted and not stopped_early:
            status, reason = "interrupted", "Ctrl-C before the schedule ended"
        elif requests["scheduled"] and not requests["ok"]:
            status, reason = "failed", "every request failed"
        else:
            status, reason = "completed", None
        verdicts = evaluate(spec.assertions, summary)
        summary["server_metrics"] = server_view(server)
        summary["assertions"] = [v.to_dict() for v in verdicts]
        summary["verdict"] = None if not verdicts else (
            "pass" if all(v.passed for v in verdicts) else "fail")
        summary["status"], summary["reason"] = status, reason
        summary["folder"] = str(self.folder.path) if self.folder is not None else None
        summary["phases_wall_s"] = self.clock.ordered()
        failed = status != "completed" or summary["verdict"] == "fail"
        return RunOutcome(summary, verdicts, status, reason, 1 if failed else 0,
                          self.folder.path if self.folder is not None else None)

    def _write_folder(self, result: Any, before: Any, after: Any) -> None:
        from modelcaliper.store import collect_environment

        spec, folder = self.spec, self.folder
        folder.write_spec(spec.to_dict())
        folder.write_environment(collect_environment(
            seeds={"seed": spec.load.seed, "data_seed": spec.load.data_seed},
            model_path=spec.model_path))
        folder.write_stats(result.stats, result.started_at_s)
        requests, queries = result.records_paths, result.query_paths
        if spec.records_dir:  # the user's copy stays where they asked; the folder gets its own
            copies = []
            for path in [*requests, *queries]:
                folder.parts_dir.mkdir(exist_ok=True)
                copies.append(shutil.copy2(path, folder.parts_dir / Path(path).name))
            requests, queries = copies[:len(requests)], copies[len(requests):]
        folder.adopt_records(requests, queries)
        folder.write_server_metrics(series_values(before.exposition if before else None),
                                    series_values(after.exposition if after else None))
