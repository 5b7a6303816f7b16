"""Servers we start: ``ServerProcess`` (one process, stopped for sure) and ``LaunchedServer``.

``ServerProcess`` runs a command in its own process group (its own session, so a Ctrl-C in
the terminal reaches us, not it), with stdout and stderr in one log file, optionally pinned
to CPUs and set to receive SIGTERM if we die (``affinity.launch_prefix``). ``stop()`` sends
SIGTERM to the whole group, waits up to the grace period, then SIGKILLs the group; it is
idempotent and also registered with ``atexit``, so the server never outlives us. The exit
is observed without reaping (``waitid(WNOWAIT)``) until the group has been killed: while the
leader is an unreaped zombie its process-group id cannot be reused by a stranger.

``LaunchedServer`` is the user's own server command (``caliper run --launch "..."``): split
with ``shlex`` (no shell), started as a ``ServerProcess``, and polled at a readiness URL
until it answers — HTTP GET 200 for ``http(s)://``, a connected channel for
``grpc://host:port``. Exiting early or not answering in time is a ``TargetStartError``
(exit 2) naming the exit code or the timeout and the last line the server logged.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modelcaliper.errors import TargetError, TargetStartError, UsageError
from modelcaliper.targets.affinity import CpuPlan, launch_prefix
from modelcaliper.targets.base import Endpoint, TargetBase

__all__ = ["LaunchedServer", "ServerProcess", "describe_exit"]

_TAIL_BYTES = 64 * 1024  # enough for the last few dozen log lines
_KILL_WAIT_S = 5.0
_READY_CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100),
                          ("grpc.min_reconnect_backoff_ms", 100),
                          ("grpc.max_reconnect_backoff_ms", 500)]
_PROBE_RETRY_S = 5.0  # how long a ready server may take to answer the model's metadata


def describe_exit(code: int) -> str:
    """``"exited with code 2"`` or ``"was killed by SIGKILL"`` for a process's exit code."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def _peek_exit(pid: int) -> int | None:
    """The exit code of child ``pid`` if it has exited, without reaping it; else None."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return -int(signal.SIGKILL)  # already reaped elsewhere: gone
    if info is None or info.si_pid == 0:
        return None
    if info.si_code == os.CLD_EXITED:
        return int(info.si_status)
    return -int(info.si_status)


class ServerProcess:
    """One server process in its own group, logging to a file, stopped for sure.

    ``workdir`` is a private temporary directory (for ready files and, without ``log_dir``,
    the log), removed by ``stop()``; the log's last lines are kept in memory then.
    """

    def __init__(
        self,
        *,
        log_dir: str | Path | None = None,
        log_name: str = "server.log",
        env: Mapping[str, str] | None = None,
        cpus: Sequence[int] = (),
        die_with_parent: bool = True,
        grace_period_s: float = 10.0,
        name: str = "the server",
    ) -> None:
        self.name = name
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.log_name = log_name
        self.env = dict(env) if env is not None else None
        self.cpus = tuple(cpus)
        self.die_with_parent = die_with_parent
        self.grace_period_s = grace_period_s
        self.argv: list[str] = []
        self._workdir: Path | None = None
        self._log_path: Path | None = None
        self._released = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._code: int | None = None
        self._tail: list[str] = []
        self._lock = threading.Lock()

    @property
    def workdir(self) -> Path:
        """The process's private scratch directory (created on first use, gone after stop)."""
        if self._released:
            raise RuntimeError("this ServerProcess was stopped; its directory is gone")
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="caliper-server-"))
        return self._workdir

    @property
    def log_path(self) -> Path:
        """Where the process's stdout and stderr go (the path stays known after stop)."""
        if self._log_path is None:
            folder = self.log_dir if self.log_dir is not None else self.workdir
            self._log_path = folder / self.log_name
        return self._log_path

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process-group id) once started."""
        return self._proc.pid if self._proc is not None else None

    def start(self, argv: Sequence[str]) -> None:
        """Start ``argv`` (pinned, in its own session); UsageError if it cannot run."""
        if self._proc is not None:
            raise RuntimeError("this ServerProcess was started already")
        self.argv = [str(a) for a in argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [*launch_prefix(self.cpus, die_with_parent=self.die_with_parent), *self.argv]
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=self.env, start_new_session=True, close_fds=True)
            except OSError as exc:
                raise UsageError(f"cannot start {self.argv[0]}: {exc.strerror}") from None
        atexit.register(self.stop)

    def exit_code(self) -> int | None:
        """The exit code if the process has ended (negative: killed by that signal)."""
        if self._code is not None:
            return self._code
        if self._proc is None:
            return None
        return _peek_exit(self._proc.pid)

    def _wait_exit(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        pause_s = 0.005
        while True:
            code = self.exit_code()
            if code is not None or time.monotonic() >= deadline:
                return code
            time.sleep(pause_s)
            pause_s = min(pause_s * 2, 0.05)

    def _signal_group(self, signum: int) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the whole group is gone already

    def stop(self) -> int | None:
        """SIGTERM the group, wait the grace period, SIGKILL it; the exit code (idempotent)."""
        with self._lock:
            try:
                if self._proc is not None and self._code is None:
                    self._terminate()
            finally:
                self._release()
            return self._code

    def _terminate(self) -> None:
        assert self._proc is not None
        try:
            if self.exit_code() is None:
                self._signal_group(signal.SIGTERM)
                self._wait_exit(self.grace_period_s)
        finally:
            # Stragglers of the group, or a leader that ignored SIGTERM. The leader is not
            # reaped yet, so the group id still belongs to this group.
            self._signal_group(signal.SIGKILL)
            if self._wait_exit(_KILL_WAIT_S) is None:
                raise TargetError(f"server process {self._proc.pid} survived SIGKILL")
            self._code = self._proc.wait()
            atexit.unregister(self.stop)

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._workdir is None:
            return
        if self.log_dir is None:  # the log goes with the directory: keep its tail
            self._tail = self._read_tail(200)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _read_tail(self, n: int) -> list[str]:
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - _TAIL_BYTES))
                data = log.read()
        except OSError:
            return []
        lines = [line.rstrip() for line in data.decode("utf-8", "replace").splitlines()]
        return [line for line in lines if line.strip()][-n:]

    def wait_ready(self, ready: Callable[[float], bool], *, timeout_s: float,
                   waiting_for: str) -> None:
        """Poll ``ready(timeout_s)`` until true; ``failure`` if the process exits or times out."""
        deadline = time.monotonic() + timeout_s
        pause_s = 0.005
        while True:
            code = self.exit_code()
            if code is not None:
                raise self.failure(f"{self.name} {describe_exit(code)} before it was ready "
                                   f"({waiting_for})")
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise self.failure(f"{self.name} was not ready within {timeout_s:g} s "
                                   f"({waiting_for})")
            if ready(min(1.0, remaining_s)):
                return
            time.sleep(min(pause_s, max(0.0, deadline - time.monotonic())))
            pause_s = min(pause_s * 2, 0.05)

    def failure(self, message: str, tail_lines: int = 20) -> TargetStartError:
        """Stop the process and describe why it failed to start, with its last log lines.

        The line is the server's own ``error: ...`` line when it printed one (a caliper
        command's one-line user error), else its last log line.
        """
        tail = self.logs_tail(tail_lines)
        errors = [line for line in tail if line.startswith("error: ")]
        if errors:
            message += ": " + errors[-1][len("error: "):].strip()
        elif tail:
            message += "; last log line: " + tail[-1].strip()
        else:
            message += "; it logged nothing"
        log_path = str(self.log_path) if self.log_dir is not None else None
        self.stop()
        return TargetStartError(message, log_tail=tail, log_path=log_path)

    def logs_tail(self, n: int = 20) -> list[str]:
        """The last ``n`` non-empty lines of the log (kept in memory after ``stop``)."""
        if n <= 0:
            return []
        if self._released and self.log_dir is None:
            return self._tail[-n:]
        if self._log_path is None:
            return []
        return self._read_tail(n)


def _check_ready_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme in ("http", "https", "grpc") and parsed.hostname and (
            parsed.scheme != "grpc" or parsed.port):
        return url
    raise UsageError(f"readiness URL '{url}' must be http://host:port/path or grpc://host:port")


class _Readiness:
    """Polls a readiness URL: HTTP GET answering 200, or a gRPC channel that connects."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._channel: Any = None

    def check(self, timeout_s: float) -> bool:
        """Whether the URL answers as ready within ``timeout_s``."""
        if self.url.startswith("grpc://"):
            import grpc

            if self._channel is None:
                # Short reconnect backoff: gRPC's default grows to minutes while the server
                # is still loading, which would delay noticing that it is up.
                self._channel = grpc.insecure_channel(
                    self.url[len("grpc://"):].rstrip("/"), options=_READY_CHANNEL_OPTIONS)
            try:
                grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
                return True
            except grpc.FutureTimeoutError:
                return False
        try:
            with urllib.request.urlopen(self.url, timeout=timeout_s) as answer:  # noqa: S310
                return int(answer.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def close(self) -> None:
        """Close the gRPC channel, if one was opened."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def _default_url(ready_url: str, protocol: str) -> str:
    parsed = urllib.parse.urlsplit(ready_url)
    if protocol.endswith("-grpc"):
        if parsed.scheme == "grpc":
            return parsed.netloc
        raise UsageError("a gRPC protocol needs the server's gRPC address (--target host:port) "
                         "when the readiness URL is HTTP")
    if parsed.scheme == "grpc":
        raise UsageError(f"{protocol} needs the server's HTTP address (--target URL) when the "
                         "readiness URL is gRPC")
    return f"{parsed.scheme}://{parsed.netloc}"


class LaunchedServer(TargetBase):
    """The user's own server command, started, awaited at ``ready_url``, and stopped."""

    def __init__(
        self,
        command: str | Sequence[str],
        ready_url: str,
        *,
        protocol: str,
        model: str,
        url: str | None = None,
        timeout_s: float = 60.0,
        env: Mapping[str, str] | None = None,
        log_dir: str | Path | None = None,
        cpus: CpuPlan | None = None,
        grace_period_s: float = 10.0,
        metrics_url: str | None = None,
    ) -> None:
        self.argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not self.argv:
            raise UsageError("--launch needs a command to run, got an empty string")
        if not timeout_s > 0:
            raise UsageError(f"the readiness timeout must be > 0 s, got {timeout_s}")
        self.ready_url = _check_ready_url(ready_url)
        self.protocol = protocol
        self.model = model
        self.url = url or _default_url(ready_url, protocol)
        self.timeout_s = timeout_s
        self.env = {**os.environ, **(env or {})}
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.cpus = cpus or CpuPlan(note="not pinned (a launched server is the user's)")
        self.grace_period_s = grace_period_s
        self.metrics_url = metrics_url
        self.process: ServerProcess | None = None

    def open(self) -> Endpoint:
        """Start the command and wait until ``ready_url`` answers; TargetStartError if not."""
        from modelcaliper.targets.remote import detect_metrics_url

        executable = self.argv[0]
        if shutil.which(executable, path=self.env.get("PATH")) is None:
            raise UsageError(f"--launch: command '{executable}' not found or not executable")
        readiness = _Readiness(self.ready_url)
        try:
            if readiness.check(timeout_s=0.5):
                raise TargetStartError(
                    f"{self.ready_url} already answers before the command started: another "
                    "server is using that address; stop it or choose another port")
            self.process = ServerProcess(
                log_dir=self.log_dir, env=self.env, cpus=self.cpus.server_cpus,
                grace_period_s=self.grace_period_s, name="the launched command")
            self.process.start(self.argv)
            self.process.wait_ready(readiness.check, timeout_s=self.timeout_s,
                                    waiting_for=f"waiting for {self.ready_url}")
            signature = self._probe()
        except BaseException:
            self.close()
            raise
        finally:
            readiness.close()
        metrics_url = self.metrics_url or detect_metrics_url(self.url, self.protocol).url
        return Endpoint(
            self.url, self.protocol, self.model, signature,
            http_url=None if self.protocol.endswith("-grpc") else self.url,
            grpc_url=self.url if self.protocol.endswith("-grpc") else None,
            metrics_url=metrics_url, pid=self.process.pid, pinning=self.cpus.to_dict())

    def _probe(self) -> Any:
        """The model's signature; retried briefly, as "ready" may come before the model."""
        from modelcaliper.load.health import probe_target

        assert self.process is not None
        deadline = time.monotonic() + min(_PROBE_RETRY_S, self.timeout_s)
        while True:
            try:
                return probe_target(self.url, self.protocol, self.model)
            except TargetError as exc:
                if self.process.exit_code() is not None or time.monotonic() >= deadline:
                    raise self.process.failure(f"the launched server is ready but model "
                                               f"'{self.model}' cannot be used: {exc}") from None
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the command's process group (SIGTERM, grace period, SIGKILL)."""
        if self.process is not None:
            self.process.stop()

    def exit_code(self) -> int | None:
        """The command's exit code if it has ended (a crash mid-run), else None."""
        return self.process.exit_code() if self.process is not None else None

    def logs_tail(self, n: int = 20) -> list[str]:
        """The last ``n`` lines the command wrote to stdout and stderr."""
        return self.process.logs_tail(n) if self.process is not None else []
