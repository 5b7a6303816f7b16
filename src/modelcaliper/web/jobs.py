"""The web UI's run queue: runs from the New run form, run in the background, in order.

    submit ─► queued ─► running ─► completed (the run is stored: its id, status, verdict)
                                └► failed    (an error before the run could be stored)

A job holds a ``RunSpec`` built and checked when it was submitted (``web.newrun``). Worker
threads, ``concurrent_runs`` of them (1 by default: a run measures latency, and two runs at
once would measure each other), take jobs in submission order and run each through
``runner.execute``, the path ``caliper run`` and ``modelcaliper.run`` take, so it lands in
the run folder and database like any other run. A job's events are the run's messages
("starting the embedded server ...") and its progress lines, the same line ``caliper run``
prints (``cli.progress.ProgressLine``), then one final ``done`` (with the run id) or
``failed`` (with the error); the event stream of ``/api/jobs/{id}/events`` replays them.

The queue is bounded (``max_queued`` waiting jobs, the last ``keep`` finished ones kept);
closing it drops the waiting jobs and ends a running load early (the run is still stored).
"""

from __future__ import annotations

import collections
import io
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelcaliper.errors import CaliperError
from modelcaliper.runner import ProgressSink

__all__ = ["FINISHED", "STATES", "Job", "JobQueue", "QueueFull"]

STATES = ("queued", "running", "completed", "failed")
"""A job's states, in the order it goes through them."""
FINISHED = ("completed", "failed")
_MAX_EVENTS = 5_000  # progress events kept per job (the final event is always kept)
_PROGRESS_EVERY_S = 0.5


class QueueFull(CaliperError):
    """Too many runs are already waiting."""


def _when(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


@dataclass(eq=False)  # a job is itself: compared (and found in the queue) by identity
class Job:
    """One submitted run: its spec, state, events and, once stored, its run id."""

    id: str
    spec: Any = field(repr=False)
    fields: dict[str, Any]
    model: str
    created_at: float = field(default_factory=time.time)
    state: str = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    run_id: str | None = None
    run_status: str | None = None
    verdict: str | None = None
    error: str | None = None
    progress: dict[str, Any] | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list, repr=False)
    stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def describe(self, position: int | None = None) -> dict[str, Any]:
        """The job as the API shows it (``position`` in the queue while it waits)."""
        return {"id": self.id, "state": self.state, "position": position, "model": self.model,
                "fields": self.fields, "created_at": _when(self.created_at),
                "started_at": _when(self.started_at), "finished_at": _when(self.finished_at),
                "run_id": self.run_id, "run_status": self.run_status, "verdict": self.verdict,
                "error": self.error, "progress": self.progress}


class _Lines(io.StringIO):
    """A text stream handing each written line to ``on_line`` (and keeping nothing)."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        super().__init__()
        self.on_line = on_line

    def write(self, text: str) -> int:
        """Pass on every non-blank line of ``text``."""
        for line in text.splitlines():
            if line.strip():
                self.on_line(line)
        return len(text)


class _JobSink(ProgressSink):
    """The run's progress line, as events of the job; ends the load early when told to stop."""

    def __init__(self, queue: JobQueue, job: Job) -> None:
        from modelcaliper.cli.progress import ProgressLine

        self.queue, self.job = queue, job
        self.line = ProgressLine(_Lines(self._emit), tty=False,
                                 plain_interval_s=_PROGRESS_EVERY_S)

    def _emit(self, text: str) -> None:
        line = self.line
        elapsed_s = (line.clock() - line.started_at) if line.started_at is not None else 0.0
        self.queue._add(self.job, "progress", {
            "line": text, "elapsed_s": round(min(max(elapsed_s, 0.0), line.total_s), 2),
            "total_s": round(line.total_s, 2)})

    def start(self, spec: Any, plan: Any) -> None:
        """Take the planned length of the run."""
        self.line.start(spec, plan)

    def update(self, batch: Any) -> bool:
        """Fold the batch into the line; True (stop) once the queue is closing."""
        self.line.update(batch)
        return self.job.stop.is_set()

    def finish(self) -> None:
        """The last line, whatever the interval."""
        self._emit(self.line.render())


class JobQueue:
    """Jobs in submission order, run by ``concurrent_runs`` background threads."""

    def __init__(self, concurrent_runs: int = 1, *, max_queued: int = 20,
                 keep: int = 100) -> None:
        if concurrent_runs < 1:
            raise ValueError(f"concurrent_runs must be ≥ 1, got {concurrent_runs}")
        self.concurrent_runs = concurrent_runs
        self.max_queued, self.keep = max_queued, keep
        self._lock = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._jobs: dict[str, Job] = {}
        self._threads: list[threading.Thread] = []
        self._closing = False

    # ------------------------------------------------------------------ submitting, reading

    def submit(self, spec: Any, fields: Mapping[str, Any], model: str) -> Job:
        """Queue a run; QueueFull when ``max_queued`` runs already wait."""
        with self._lock:
            if self._closing:
                raise QueueFull("the UI is shutting down; no new runs")
            if len(self._waiting) >= self.max_queued:
                raise QueueFull(f"{len(self._waiting)} runs are already waiting; try again "
                                "when one has finished")
            job = Job(secrets.token_hex(6), spec, dict(fields), model)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._forget_old()
            if len(self._threads) < self.concurrent_runs:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"caliper-job-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
            self._lock.notify()
            return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, if it is still known."""
        with self._lock:
            return self._jobs.get(job_id)

    def describe(self, job: Job) -> dict[str, Any]:
        """The job's API view, with its place in the queue."""
        with self._lock:
            position = (self._waiting.index(job) + 1) if job in self._waiting else None
            return job.describe(position)

    def listing(self) -> list[dict[str, Any]]:
        """Running jobs, then the waiting ones in order, then the finished, newest first."""
        with self._lock:
            running = [j for j in self._jobs.values() if j.state == "running"]
            done = sorted((j for j in self._jobs.values() if j.state in FINISHED),
                          key=lambda j: j.finished_at or 0.0, reverse=True)
            return ([j.describe() for j in running]
                    + [j.describe(i + 1) for i, j in enumerate(self._waiting)]
                    + [j.describe() for j in done])

    def events_since(self, job: Job, index: int) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        """The job's events from ``index`` on, and whether it has finished (no more will come)."""
        with self._lock:
            return job.events[index:], job.state in FINISHED or self._closing

    def wait(self, job: Job, timeout_s: float) -> bool:
        """Block until the job has finished (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while job.state not in FINISHED:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Drop the waiting jobs, end the running loads early, wait for the workers."""
        with self._lock:
            self._closing = True
            for job in self._waiting:
                job.state, job.error, job.finished_at = "failed", "the UI shut down", time.time()
                job.events.append(("failed", {"error": job.error}))
            self._waiting.clear()
            for job in self._jobs.values():
                job.stop.set()
            self._lock.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ the workers

    def _add(self, job: Job, name: str, data: dict[str, Any]) -> None:
        with self._lock:
            if name == "progress":
                job.progress = data
            if name in ("done", "failed") or len(job.events) < _MAX_EVENTS:
                job.events.append((name, data))
            self._lock.notify_all()

    def _forget_old(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.state in FINISHED),
                          key=lambda j: j.finished_at or 0.0)
        for job in finished[:max(0, len(finished) - self.keep)]:
            del self._jobs[job.id]

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
                job = self._waiting.popleft()
                job.state, job.started_at = "running", time.time()
                job.events.append(("started", {"id": job.id}))
                self._lock.notify_all()
            self._run(job)

    def _run(self, job: Job) -> None:
        from modelcaliper.runner import execute

        try:
            outcome = execute(job.spec, say=lambda text: self._add(job, "note", {"line": text}),
                              progress=_JobSink(self, job))
        except Exception as exc:  # noqa: BLE001 - every failure ends the job, with its message
            message = " ".join(str(exc).split()) or type(exc).__name__
            if not isinstance(exc, CaliperError):
                message = f"{type(exc).__name__}: {message}"
            with self._lock:
                job.state, job.error, job.finished_at = "failed", message, time.time()
                job.events.append(("failed", {"error": message}))
                self._lock.notify_all()
            return
        summary = outcome.summary or {}
        with self._lock:
            job.run_id = summary.get("run_id")
            job.run_status, job.verdict = outcome.status, summary.get("verdict")
            job.state, job.finished_at = "completed", time.time()
            job.events.append(("done", {"run_id": job.run_id, "status": job.run_status,
                                        "verdict": job.verdict, "reason": outcome.reason}))
            self._lock.notify_all()
