"""Profiles taken under load: the embedded server's admin endpoints, and remote TF capture.

Server side, ``ProfileAdmin`` serves two routes on the embedded server's HTTP port::

    POST /caliper/profile/start   {"out_dir": "/abs/dir"}  (optional; default a new temp dir)
        200 {"status": "started", "out_dir": ...}
        409 profiling already running
    POST /caliper/profile/stop    {"convert": false}  (optional; default true)
        200 {"status": "ok", "raw_path", "trace_path", "profile_path", "window_s",
             "profile": {modelcaliper.profile/1 document}}
        200 {"status": "stopped", "raw_path", "platform", "model_path", "window_s"}
            with "convert": false: the raw capture, to convert elsewhere
        409 profiling not running; 422 {"error", "raw_path"}: the capture could not be read
        (empty window, corrupt file); the raw files stay where they are

Both answer only clients on the loopback interface (403 otherwise): they write files where
the caller says. Starting switches the runtime's own profiler on (``start_profiling``);
converting runs in a worker thread, so the server keeps serving meanwhile.

Client side, ``capture_under_load`` takes one profile window while load runs, returning a
``ProfileResult`` or, when no profile can be had, a ``MissingProfile`` saying why; it never
raises for a target that cannot be profiled, so the load test's results are kept either way.
It blocks for the window (``BackgroundCapture`` runs it in a thread during the steady phase):

- with ``profiler_address`` (``host:port`` of a TensorFlow profiler service: TF Serving's
  gRPC port, or ``caliper serve-model --profiler-port``) it captures through TensorFlow's
  remote capture client (``tf.profiler.experimental.client.trace``);
- otherwise it drives the admin endpoints of the endpoint's HTTP address, asking the server
  not to convert: converting costs CPU (and, in the server, its GIL) that the load test
  would measure, so the caller converts (``take_capture`` then ``convert_raw``), after the
  load when it can.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.errors import CaliperError, UsageError
from modelcaliper.profile.base import (
    TRACE_FILE,
    MissingProfile,
    ProfileResult,
    write_profile,
)
from modelcaliper.profile.grouping import Grouper

__all__ = ["ADMIN_PREFIX", "BackgroundCapture", "ProfileAdmin", "RawCapture", "START_PATH",
           "STOP_PATH", "capture_under_load", "convert_capture", "convert_raw", "steady_window",
           "take_capture"]

ADMIN_PREFIX = "/caliper/profile/"
START_PATH = ADMIN_PREFIX + "start"
STOP_PATH = ADMIN_PREFIX + "stop"
_LOOPBACK = ("127.", "::1", "::ffff:127.")
_TF_PLATFORM = "tensorflow_savedmodel"


def convert_capture(runtime_platform: str, raw: Path, *, grouper: Grouper | None = None,
                    model_path: Path | None = None, window_s: float | None = None,
                    trace_path: Path | None = None) -> ProfileResult:
    """Convert a raw capture of the runtime ``runtime_platform`` (a server's platform string)."""
    if runtime_platform == _TF_PLATFORM:
        from modelcaliper.profile.tensorflow import convert_tf_profile

        return convert_tf_profile(raw, grouper=grouper, model_path=model_path,
                                  trace_path=trace_path, label="under load", window_s=window_s)
    from modelcaliper.profile.onnx import convert_onnx_profile

    return convert_onnx_profile(raw, grouper=grouper, label="under load", window_s=window_s)


class ProfileAdmin:
    """The embedded server's ``/caliper/profile/{start,stop}`` endpoints over one runtime."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self._out_dir: Path | None = None
        self._started_s = 0.0
        self._busy = asyncio.Lock()

    async def handle(self, path: str, method: str, body: bytes,
                     client_host: str | None) -> tuple[int, str, dict[str, Any]]:
        """Answer one admin request: ``(HTTP status, gRPC code name, JSON document)``."""
        if not client_host or not client_host.startswith(_LOOPBACK):
            return 403, "PERMISSION_DENIED", {"error": "profiling endpoints answer loopback "
                                                       "clients only"}
        if path not in (START_PATH, STOP_PATH):
            return 404, "NOT_FOUND", {"error": f"no route {path}; use {START_PATH} or "
                                               f"{STOP_PATH}"}
        if method != "POST":
            return 405, "UNIMPLEMENTED", {"error": f"use POST here, not {method}"}
        async with self._busy:
            try:
                if path == START_PATH:
                    return await self._start(body)
                return await self._stop(body)
            except UsageError as exc:
                return 409, "FAILED_PRECONDITION", {"error": str(exc)}

    async def _start(self, body: bytes) -> tuple[int, str, dict[str, Any]]:
        options = _options(body)
        if options is None:
            return 400, "INVALID_ARGUMENT", {"error": "start body must be JSON like "
                                                      '{"out_dir": "/abs/dir"}'}
        wanted = options.get("out_dir")
        if wanted is not None and (not isinstance(wanted, str) or not Path(wanted).is_absolute()):
            return 400, "INVALID_ARGUMENT", {"error": f"out_dir must be an absolute path, "
                                                      f"got {wanted!r}"}
        out_dir = Path(wanted) if wanted else Path(tempfile.mkdtemp(prefix="caliper-profile-"))
        await asyncio.to_thread(self.runtime.start_profiling, out_dir)
        self._out_dir, self._started_s = out_dir, time.monotonic()
        return 200, "OK", {"status": "started", "out_dir": str(out_dir)}

    async def _stop(self, body: bytes) -> tuple[int, str, dict[str, Any]]:
        options = _options(body)
        if options is None:
            return 400, "INVALID_ARGUMENT", {"error": 'stop body must be JSON like '
                                                      '{"convert": false}'}
        raw = Path(await asyncio.to_thread(self.runtime.stop_profiling))
        out_dir, self._out_dir = self._out_dir, None
        window_s = round(time.monotonic() - self._started_s, 3)
        folder = out_dir or (raw if raw.is_dir() else raw.parent)
        model_path = getattr(self.runtime, "path", None)
        if options.get("convert") is False:
            return 200, "OK", {"status": "stopped", "raw_path": str(raw),
                               "platform": self.runtime.platform, "window_s": window_s,
                               "model_path": None if model_path is None else str(model_path)}
        try:
            result = await asyncio.to_thread(
                convert_capture, self.runtime.platform, raw, model_path=model_path,
                window_s=window_s, trace_path=folder / TRACE_FILE)
            profile_path = await asyncio.to_thread(write_profile, result, folder)
        except CaliperError as exc:
            return 422, "INVALID_ARGUMENT", {"error": str(exc), "raw_path": str(raw)}
        return 200, "OK", {"status": "ok", "raw_path": result.raw_path,
                           "trace_path": result.trace_path, "profile_path": str(profile_path),
                           "window_s": window_s, "profile": result.to_dict()}


def _options(body: bytes) -> dict[str, Any] | None:
    """A request body's JSON object ({} when empty), or None when it is not one."""
    try:
        options = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        return None
    return options if isinstance(options, dict) else None


# ------------------------------------------------------------------------------ client side


@dataclass(frozen=True)
class RawCapture:
    """A finished capture window not converted yet: what ran, where its files are."""

    platform: str
    raw_path: Path
    folder: Path
    window_s: float
    model_path: Path | None = None


def capture_under_load(
    endpoint: Any,
    duration_s: float,
    out_dir: str | Path,
    *,
    profiler_address: str | None = None,
    grouper: Grouper | None = None,
    model_path: str | Path | None = None,
    request_timeout_s: float = 120.0,
    cancel: threading.Event | None = None,
) -> ProfileResult | MissingProfile:
    """Profile the target for ``duration_s`` while load runs; files go to ``out_dir``.

    ``endpoint`` is a ``targets.Endpoint`` (its ``http_url`` is used) or an HTTP base URL.
    ``grouper`` carries the user's ``--group`` rules; ``model_path`` (the SavedModel, for a
    remote TF capture) names untraced loops. Setting ``cancel`` ends an admin-endpoint window
    early (the profile then covers the shorter window). The capture is converted here, in
    this process, after the window. Never raises for an unprofilable target.
    """
    raw = take_capture(endpoint, duration_s, out_dir, profiler_address=profiler_address,
                       model_path=model_path, request_timeout_s=request_timeout_s,
                       cancel=cancel)
    return raw if isinstance(raw, MissingProfile) else convert_raw(raw, grouper)


def take_capture(
    endpoint: Any,
    duration_s: float,
    out_dir: str | Path,
    *,
    profiler_address: str | None = None,
    model_path: str | Path | None = None,
    request_timeout_s: float = 120.0,
    cancel: threading.Event | None = None,
) -> RawCapture | MissingProfile:
    """The capture half of ``capture_under_load``: the window's raw files, not converted."""
    out = Path(out_dir)
    if not duration_s > 0:
        return MissingProfile(f"the capture window is empty ({duration_s} s); give the steady "
                              "phase a positive duration")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if profiler_address:
            return _capture_remote_tf(profiler_address, duration_s, out, model_path)
        return _capture_embedded(endpoint, duration_s, out, request_timeout_s,
                                 cancel or threading.Event())
    except CaliperError as exc:
        return MissingProfile(str(exc))
    except OSError as exc:
        return MissingProfile(f"cannot write the profile under {out}: {exc.strerror or exc}")


def convert_raw(raw: RawCapture, grouper: Grouper | None = None) -> ProfileResult | MissingProfile:
    """Convert a ``RawCapture`` and write its ``profile.json``; a MissingProfile if unreadable."""
    try:
        result = convert_capture(raw.platform, raw.raw_path, grouper=grouper,
                                 model_path=raw.model_path, window_s=raw.window_s,
                                 trace_path=raw.folder / TRACE_FILE)
        write_profile(result, raw.folder)
    except CaliperError as exc:
        return MissingProfile(f"no profile from the capture in {raw.raw_path}: {exc}",
                              raw_path=str(raw.raw_path))
    except OSError as exc:
        return MissingProfile(f"cannot write the profile under {raw.folder}: "
                              f"{exc.strerror or exc}", raw_path=str(raw.raw_path))
    return result


def _http_url(endpoint: Any) -> str | None:
    url = endpoint if isinstance(endpoint, str) else getattr(endpoint, "http_url", None)
    return url.rstrip("/") if url else None


def _post(url: str, document: dict[str, Any] | None,
          timeout_s: float) -> tuple[int, dict[str, Any]]:
    data = orjson.dumps(document or {})
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, orjson.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            body = orjson.loads(exc.read() or b"{}")
        except orjson.JSONDecodeError:
            body = {}
        return exc.code, body if isinstance(body, dict) else {}


def _capture_embedded(endpoint: Any, duration_s: float, out: Path, timeout_s: float,
                      cancel: threading.Event) -> RawCapture | MissingProfile:
    base = _http_url(endpoint)
    if base is None:
        return MissingProfile("the target has no HTTP address for caliper's profiling "
                              "endpoints; for a TensorFlow server pass its profiler address "
                              "(host:port)")
    try:
        status, body = _post(base + START_PATH, {"out_dir": str(out.resolve())}, timeout_s)
    except (urllib.error.URLError, OSError) as exc:
        return MissingProfile(f"cannot reach {base} to start profiling: {_reason(exc)}")
    if status == 404:
        return MissingProfile(f"{base} does not serve caliper's profiling endpoints (only "
                              "caliper's embedded server does); for TF Serving pass its "
                              "profiler address (host:port)")
    if status != 200:
        return MissingProfile(f"profiling could not start on {base}: "
                              f"{body.get('error', f'HTTP {status}')}")
    cancel.wait(duration_s)
    try:
        # Converting is left to this side, after the window: done in the server it would
        # take the server's CPU (and its GIL) while the load test still measures it.
        status, body = _post(base + STOP_PATH, {"convert": False}, timeout_s)
    except (urllib.error.URLError, OSError) as exc:
        return MissingProfile(f"cannot reach {base} to stop profiling: {_reason(exc)}")
    if status != 200 or not body.get("raw_path") or not body.get("platform"):
        return MissingProfile(f"no profile from {base}: {body.get('error', f'HTTP {status}')}",
                              raw_path=body.get("raw_path"))
    model_path = body.get("model_path")
    return RawCapture(platform=str(body["platform"]), raw_path=Path(body["raw_path"]),
                      folder=out, window_s=float(body.get("window_s") or duration_s),
                      model_path=Path(model_path) if model_path else None)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(getattr(reason, "strerror", None) or reason)


def _capture_remote_tf(address: str, duration_s: float, out: Path,
                       model_path: str | Path | None) -> RawCapture | MissingProfile:
    from modelcaliper.server.runtimes.base import import_optional

    host, port = _split_address(address)
    try:
        socket.create_connection((host, port), timeout=5.0).close()
    except OSError as exc:
        return MissingProfile(f"no TensorFlow profiler service at {host}:{port}: "
                              f"{exc.strerror or exc}; start the server with a profiler port")
    tf = import_optional("tensorflow", "tensorflow", "capturing a remote TensorFlow profile")
    try:
        tf.profiler.experimental.client.trace(f"grpc://{host}:{port}", str(out),
                                              max(1, int(duration_s * 1000)),
                                              num_tracing_attempts=1)
    except Exception as exc:  # the client raises bare RuntimeErrors and TF errors alike
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        return MissingProfile(f"the TensorFlow profiler service at {host}:{port} returned no "
                              f"profile ({first}); is it a profiler port, and did the model "
                              "run during the window?")
    return RawCapture(platform=_TF_PLATFORM, raw_path=out, folder=out, window_s=duration_s,
                      model_path=Path(model_path) if model_path else None)


def _split_address(address: str) -> tuple[str, int]:
    text = address.strip().removeprefix("grpc://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError(f"profiler address must look like host:port, got {address!r}")
    return host.strip("[]"), int(port)


def steady_window(warmup_s: float, duration_s: float,
                  max_window_s: float = 10.0) -> tuple[float, float]:
    """``(delay_s, window_s)`` of a capture inside a load's steady phase: it starts a quarter
    into the measured ``duration_s`` (after ``warmup_s``) and lasts half of it, at most
    ``max_window_s``; ``(0, 0)`` when there is no measured time to profile."""
    if not duration_s > 0:
        return 0.0, 0.0
    return warmup_s + duration_s / 4, min(duration_s / 2, max_window_s)


class BackgroundCapture:
    """``capture_under_load`` with the window in a thread, ``delay_s`` after ``start()``, and
    the conversion in ``result()``: for a caller that blocks on the load meanwhile
    (``start()`` just before the load, ``result()`` after it, so converting never competes
    with the load for CPU)."""

    def __init__(self, endpoint: Any, out_dir: str | Path, *, delay_s: float,
                 duration_s: float, grouper: Grouper | None = None, **options: Any) -> None:
        self._args = (endpoint, duration_s, out_dir)
        self._delay_s = delay_s
        self._grouper = grouper
        self._options = options
        self._cancel = threading.Event()
        self._raw: RawCapture | MissingProfile | None = None
        self._thread = threading.Thread(target=self._run, name="caliper-profile", daemon=True)

    def start(self) -> BackgroundCapture:
        """Start the countdown to the capture window; returns ``self``."""
        self._thread.start()
        return self

    def _run(self) -> None:
        if self._cancel.wait(self._delay_s):
            self._raw = MissingProfile("the load ended before the profile window began")
            return
        self._raw = take_capture(*self._args, cancel=self._cancel, **self._options)

    def cancel(self) -> None:
        """End the window now (or skip it if it has not begun): the load ended early."""
        self._cancel.set()

    def result(self, timeout_s: float | None = None) -> ProfileResult | MissingProfile:
        """Wait for the window to close, convert the capture here and now, return it."""
        self._thread.join(timeout_s)
        raw = self._raw
        if raw is None:
            return MissingProfile("the profile capture did not finish in time")
        return raw if isinstance(raw, MissingProfile) else convert_raw(raw, self._grouper)
