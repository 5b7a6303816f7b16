"""Structured logs of the embedded server: one JSON object per line on stderr.

The server logs its life (``start``, ``ready``, ``stop``) and its errors, never one line per
request: at thousands of requests per second a log line each would cost more than the
request. Every line has ``ts`` (Unix seconds), ``level`` and ``event``, then the event's
fields, e.g. ``{"ts": 1718000000.123, "level": "info", "event": "ready", "http_port": 8501}``.
Messages uvicorn logs at warning level or above are reformatted the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import orjson

__all__ = ["EventLog", "JsonLineHandler", "capture_library_logs", "native_stderr_as_events"]


def _line(level: str, event: str, fields: dict[str, Any]) -> bytes:
    record = {"ts": round(time.time(), 3), "level": level, "event": event, **fields}
    return orjson.dumps(record, default=str) + b"\n"


class EventLog:
    """Writes events as JSON lines to a text stream (stderr unless told otherwise)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, level: str, event: str, **fields: Any) -> None:
        """Write one event; a closed or broken stream is ignored, logging never fails a server."""
        text = _line(level, event, fields).decode()
        stream = self._stream or sys.stderr
        with self._lock:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                pass

    def info(self, event: str, **fields: Any) -> None:
        """Write an ``info`` event."""
        self.emit("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Write a ``warning`` event."""
        self.emit("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        """Write an ``error`` event."""
        self.emit("error", event, **fields)


class JsonLineHandler(logging.Handler):
    """A ``logging`` handler that forwards records to an ``EventLog`` as JSON lines."""

    def __init__(self, log: EventLog, event: str) -> None:
        super().__init__()
        self._log = log
        self._event = event

    def emit(self, record: logging.LogRecord) -> None:
        """Forward one record: its level, logger name, message and exception summary."""
        fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["exception"] = f"{type(exc).__name__}: {exc}"
        self._log.emit(record.levelname.lower(), self._event, **fields)


def capture_library_logs(log: EventLog, names: tuple[str, ...] = ("uvicorn",)) -> None:
    """Route the named libraries' warnings and errors through ``log`` instead of plain text."""
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers[:] = [JsonLineHandler(log, "library")]
        logger.setLevel(logging.WARNING)
        logger.propagate = False


_ABSL_LINE = re.compile(r"^([IWEF])\d{4} ")
_ABSL_LEVELS = {"I": "info", "W": "warning", "E": "error", "F": "error"}
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"


@contextlib.contextmanager
def native_stderr_as_events(log: EventLog, event: str = "runtime_log") -> Iterator[None]:
    """Capture what native code (TensorFlow's C++ start-up) writes to fd 2 meanwhile, and
    re-emit each line as an event, so stderr stays one JSON object per line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to keep clean
        yield
        return
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    lines: list[bytes] = []

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            lines.extend(pipe)

    reader = threading.Thread(target=pump, name="stderr-capture", daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # drops the pipe's last writer: the reader sees the end
        os.close(saved)
        reader.join(timeout=5.0)
        for raw in lines:
            text = raw.decode("utf-8", "replace").rstrip()
            if not text or text.startswith(_ABSL_PREAMBLE):
                continue
            match = _ABSL_LINE.match(text)
            log.emit(_ABSL_LEVELS[match.group(1)] if match else "info", event, message=text)
