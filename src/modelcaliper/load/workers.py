"""Run a load plan in one process or in ``--workers N`` processes sharing one global schedule.

The schedule is computed once, in the parent, from the spec's seed; worker ``i`` gets the
units ``i, i + N, i + 2N, ...`` (``split_for_workers``), so together the workers send exactly
the single-process schedule, each at 1/N of the rate with the same shape. Every worker is a
``spawn``-ed process with its own event loop, transport and records part file
(``requests-w{i}.parquet``); it reports its statistics back, and the parent merges histograms,
interval series and counters exactly.

Start-up: each worker builds and starts its transport, then says it is ready; once all are,
the parent picks a start instant a little in the future and sends it as wall-clock time,
which each worker converts to its own ``perf_counter_ns`` — so offset 0 is the same moment
in every process. Ctrl-C reaches every process of the terminal's group; the parent also
tells each worker to stop over its pipe, so a programmatic interrupt works the same way.

Progress: with a ``progress`` hook, every ``progress_interval_s`` each driver's new records
(``load.live.LiveBatch``) are handed to the hook — in the driver's event loop with one
worker, sent over the pipe to the parent with several. A hook returning True stops the run
the way Ctrl-C does (e.g. when the target's process has died).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelcaliper.errors import CaliperError, TargetError, UsageError
from modelcaliper.load.driver import DEFAULT_SPIN_S, Driver, DriveResult
from modelcaliper.load.live import LiveTap, ProgressHook
from modelcaliper.load.pool import RequestPool
from modelcaliper.load.records import Recorder, RunStats
from modelcaliper.load.schedule import split_for_workers
from modelcaliper.load.spec import LoadSpec, Plan
from modelcaliper.load.transport import Transport

__all__ = ["RunResult", "TransportRecipe", "run_load", "run_load_async"]

TransportFactory = Callable[[], Transport]
"""Builds a fresh transport; must be picklable (a module-level class) for ``--workers``."""

_START_LEAD_S = 0.25  # between "all workers ready" and offset 0
_READY_TIMEOUT_S = 120.0
_EXIT_GRACE_S = 60.0
DEFAULT_PROGRESS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class TransportRecipe:
    """A picklable description of the real transport of a protocol, for any process."""

    protocol: str
    url: str
    connections: int = 8
    http2: bool = False

    def __call__(self) -> Transport:
        """A new HTTP/1.1, HTTP/2 or gRPC transport to ``url`` with ``connections`` of them."""
        if self.protocol.endswith("-grpc"):
            from modelcaliper.load.grpc import GrpcTransport, parse_grpc_target

            return GrpcTransport(parse_grpc_target(self.url), channels=self.connections)
        from modelcaliper.load.health import http_base

        if self.http2:
            from modelcaliper.load.http2 import Http2Transport

            return Http2Transport(http_base(self.url), connections=self.connections)
        from modelcaliper.load.http import HttpTransport

        return HttpTransport(http_base(self.url), connections=self.connections)

    @property
    def fast_loop(self) -> bool:
        """Whether this transport may run on uvloop (grpc.aio needs asyncio's own loop)."""
        return not self.protocol.endswith("-grpc")


@dataclass
class RunResult:
    """The merged outcome of a run and each worker's own result."""

    stats: RunStats
    workers: list[DriveResult]
    interrupted: bool
    started_at_s: float
    wall_s: float
    cpu_s: float
    records_paths: list[str] = field(default_factory=list)
    query_paths: list[str] = field(default_factory=list)

    @classmethod
    def merge(cls, results: list[DriveResult]) -> RunResult:
        """One result from the workers' results, statistics merged exactly."""
        stats = RunStats()
        for result in results:
            stats.merge(result.stats)
        return cls(
            stats=stats, workers=results,
            interrupted=any(r.interrupted for r in results),
            started_at_s=min(r.started_at_s for r in results),
            wall_s=max(r.wall_s for r in results),
            cpu_s=sum(r.cpu_s for r in results),
            records_paths=[r.records_path for r in results if r.records_path],
            query_paths=[r.queries_path for r in results if r.queries_path])


def _paths(records_dir: str | Path | None, worker: int) -> tuple[Path | None, Path | None]:
    if records_dir is None:
        return None, None
    base = Path(records_dir)
    return base / f"requests-w{worker}.parquet", base / f"queries-w{worker}.parquet"


async def _watch(driver: Driver, interval_s: float,
                 emit: Callable[[Any], bool | None]) -> None:
    """Every ``interval_s``, hand the driver's new records to ``emit``; True stops the run."""
    tap = LiveTap(driver.recorder)
    while True:
        await asyncio.sleep(interval_s)
        if emit(tap.take(driver.units_dispatched)) and not driver.stopping:
            driver.stop()


async def _drive(driver: Driver, offsets_s: np.ndarray, unit_ids: np.ndarray | None,
                 start_ns: int | None, handle_sigint: bool,
                 watch: Callable[[Any], bool | None] | None,
                 interval_s: float) -> DriveResult:
    """``driver.run`` with an optional live watcher beside it."""
    watcher = asyncio.ensure_future(_watch(driver, interval_s, watch)) if watch else None
    try:
        return await driver.run(offsets_s, unit_ids, start_ns=start_ns,
                                handle_sigint=handle_sigint)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def run_load_async(spec: LoadSpec, plan: Plan, pool: RequestPool,
                         transport: Transport, *, records_dir: str | Path | None = None,
                         spin_s: float = DEFAULT_SPIN_S, handle_sigint: bool = False,
                         driver_hook: Callable[[Driver], None] | None = None,
                         progress: ProgressHook | None = None,
                         progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S) -> RunResult:
    """Run the whole plan in this process's event loop with an already started transport."""
    path, query_path = _paths(records_dir, 0)
    driver = Driver(spec, transport, pool, spin_s=spin_s,
                    recorder=Recorder(worker=0, path=path, query_path=query_path))
    if driver_hook is not None:
        driver_hook(driver)
    result = await _drive(driver, plan.offsets_s, None, None, handle_sigint, progress,
                          progress_interval_s)
    return RunResult.merge([result])


def _run_on_fast_loop(coro: Any, factory: Any) -> Any:
    """Run ``coro`` on a uvloop event loop when uvloop is installed and the transport made by
    ``factory`` allows it (``fast_loop``), else on asyncio's own.

    uvloop's I/O path costs the generator noticeably less CPU per request; timing never
    depends on it (the driver reads ``time.perf_counter_ns`` and spins the last stretch).
    The loop is made for this run only: the process's event-loop policy is left alone.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    if not getattr(factory, "fast_loop", False):
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_load(spec: LoadSpec, plan: Plan, pool: RequestPool, factory: TransportFactory, *,
             records_dir: str | Path | None = None, spin_s: float = DEFAULT_SPIN_S,
             handle_sigint: bool = True, progress: ProgressHook | None = None,
             progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S,
             check: Any = None) -> RunResult:
    """Run the plan with ``spec.workers`` processes (in this process when there is one).

    ``check`` (the driver's answer check, see ``driver.Check``) needs one process.
    """
    if check is not None and spec.workers != 1:
        raise UsageError("checking model outputs runs in one generator process; "
                         "drop --workers or the output checks")
    if spec.workers == 1:
        return _run_on_fast_loop(_single(spec, plan, pool, factory, records_dir, spin_s,
                                         handle_sigint, progress, progress_interval_s, check),
                                 factory)
    return _run_workers(spec, plan, pool, factory, records_dir, spin_s, progress,
                        progress_interval_s)


async def _single(spec: LoadSpec, plan: Plan, pool: RequestPool, factory: TransportFactory,
                  records_dir: str | Path | None, spin_s: float, handle_sigint: bool,
                  progress: ProgressHook | None, progress_interval_s: float,
                  check: Any = None) -> RunResult:
    transport = factory()
    await transport.start()

    def attach(driver: Driver) -> None:
        driver.check = check

    try:
        return await run_load_async(spec, plan, pool, transport, records_dir=records_dir,
                                    spin_s=spin_s, handle_sigint=handle_sigint,
                                    driver_hook=attach if check is not None else None,
                                    progress=progress, progress_interval_s=progress_interval_s)
    finally:
        await transport.close()


# ---------------------------------------------------------------------- worker processes


def _worker_main(conn: Any, worker: int, spec: LoadSpec, offsets_s: np.ndarray,
                 unit_ids: np.ndarray, pool: RequestPool, factory: TransportFactory,
                 records_dir: str | None, spin_s: float,
                 progress_interval_s: float | None = None) -> None:
    """Entry point of one worker process: start, wait for the start instant, run, report."""
    try:
        # Worker processes run on asyncio's own loop; only a single-process run uses uvloop.
        result = asyncio.run(_worker_async(conn, worker, spec, offsets_s, unit_ids, pool,
                                           factory, records_dir, spin_s, progress_interval_s))
        conn.send(("result", result))
    except CaliperError as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", (type(exc).__name__, str(exc))))
    except BaseException as exc:  # noqa: BLE001 - report anything, the parent decides
        with contextlib.suppress(Exception):
            conn.send(("error", (type(exc).__name__, f"worker {worker} failed: {exc}")))
    finally:
        conn.close()


async def _worker_async(conn: Any, worker: int, spec: LoadSpec, offsets_s: np.ndarray,
                        unit_ids: np.ndarray, pool: RequestPool, factory: TransportFactory,
                        records_dir: str | None, spin_s: float,
                        progress_interval_s: float | None) -> DriveResult:
    loop = asyncio.get_running_loop()
    transport = factory()
    await transport.start()
    try:
        # The recorder (and its writer process) is set up before this worker says it is
        # ready: the start instant is only a quarter second ahead once it is picked.
        path, query_path = _paths(records_dir, worker)
        recorder = Recorder(worker=worker, path=path, query_path=query_path)
        conn.send(("ready", None))
        message = await loop.run_in_executor(None, conn.recv)
        if message[0] != "start":
            raise TargetError(f"worker {worker}: told to stop before the start")
        start_ns = time.perf_counter_ns() + (message[1] - time.time_ns())
        driver = Driver(spec, transport, pool, worker=worker, spin_s=spin_s, recorder=recorder)

        def on_message() -> None:
            with contextlib.suppress(EOFError, OSError):
                if conn.poll() and conn.recv()[0] == "stop":
                    driver.stop()

        def send_progress(batch: Any) -> None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("progress", batch))

        loop.add_reader(conn.fileno(), on_message)
        try:
            return await _drive(driver, offsets_s, unit_ids, start_ns, True,
                                send_progress if progress_interval_s else None,
                                progress_interval_s or DEFAULT_PROGRESS_INTERVAL_S)
        finally:
            loop.remove_reader(conn.fileno())
    finally:
        await transport.close()


def _run_workers(spec: LoadSpec, plan: Plan, pool: RequestPool, factory: TransportFactory,
                 records_dir: str | Path | None, spin_s: float,
                 progress: ProgressHook | None = None,
                 progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S) -> RunResult:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    offsets = split_for_workers(plan.offsets_s, spec.workers)
    ids = split_for_workers(np.arange(len(plan.offsets_s), dtype=np.int64), spec.workers)
    pipes, processes = [], []
    for worker in range(spec.workers):
        parent_end, child_end = ctx.Pipe()
        process = ctx.Process(
            target=_worker_main, name=f"caliper-worker-{worker}", daemon=True,
            args=(child_end, worker, spec, offsets[worker], ids[worker], pool, factory,
                  None if records_dir is None else str(records_dir), spin_s,
                  progress_interval_s if progress is not None else None))
        process.start()
        child_end.close()
        pipes.append(parent_end)
        processes.append(process)
    try:
        for worker, pipe in enumerate(pipes):
            _expect(pipe, "ready", worker, _READY_TIMEOUT_S)
        start_epoch_ns = time.time_ns() + round(_START_LEAD_S * 1e9)
        for pipe in pipes:
            pipe.send(("start", start_epoch_ns))
        last_s = float(plan.offsets_s[-1]) if len(plan.offsets_s) else 0.0
        rounds = math.ceil(spec.requests_per_unit / spec.per_query_concurrency) \
            if spec.per_query_concurrency else 1
        budget_s = _START_LEAD_S + last_s + spec.timeout_s * rounds + spec.deadline_s \
            + _EXIT_GRACE_S
        results = _collect(pipes, budget_s, progress)
    finally:
        # Closing our ends first wakes any worker still waiting for its start.
        for pipe in pipes:
            pipe.close()
        for process in processes:
            process.join(timeout=5.0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5.0)
    return RunResult.merge(results)


def _expect(pipe: Any, kind: str, worker: int, timeout_s: float,
            progress: ProgressHook | None = None) -> Any:
    """The payload of the next message from ``worker`` of ``kind`` (progress goes to the hook).

    Returns None when only progress messages were waiting; True from the hook is signalled
    as ``_StopAsked``.
    """
    if not pipe.poll(timeout_s):
        raise TargetError(f"worker {worker} did not report '{kind}' within {timeout_s:g}s")
    try:
        tag, payload = pipe.recv()
    except EOFError:
        raise TargetError(f"worker {worker} exited before reporting '{kind}'") from None
    if tag == "progress":
        if progress is not None and progress(payload):
            raise _StopAsked
        return None
    if tag == "error":
        name, message = payload
        raise TargetError(f"worker {worker}: {name}: {message}")
    if tag != kind:
        raise TargetError(f"worker {worker} sent '{tag}' instead of '{kind}'")
    return payload


class _StopAsked(Exception):
    """The progress hook asked to stop the run."""


def _collect(pipes: list[Any], budget_s: float,
             progress: ProgressHook | None = None) -> list[DriveResult]:
    """Every worker's result; on Ctrl-C (or a hook's stop), tell the workers to stop."""
    results: list[DriveResult | None] = [None] * len(pipes)
    deadline = time.monotonic() + budget_s
    interrupted = False
    while any(r is None for r in results):
        try:
            for worker, pipe in enumerate(pipes):
                if results[worker] is None and pipe.poll(0.05 / len(pipes)):
                    results[worker] = _expect(pipe, "result", worker, 0,
                                              None if interrupted else progress)
            if time.monotonic() > deadline:
                missing = [w for w, r in enumerate(results) if r is None]
                raise TargetError(f"workers {missing} did not finish within {budget_s:.0f}s")
        except (KeyboardInterrupt, _StopAsked) as exc:
            if interrupted:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                continue
            interrupted = True
            deadline = min(deadline, time.monotonic() + 30.0)
            for pipe in pipes:
                with contextlib.suppress(OSError):
                    pipe.send(("stop", None))
    done = [r for r in results if r is not None]
    if interrupted:
        for result in done:
            result.interrupted = True
    return done
