"""Helpers of the target tests: the test model's width, processes and ports."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

N_INPUTS = 6
"""Width of the ``features`` input of the test model (``conftest.model``)."""


def gone(pid: int, timeout_s: float = 20.0) -> bool:
    """Whether process ``pid`` no longer runs (or is a zombie) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def free_port() -> int:
    """A port nothing listens on (bound and released again)."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 right now."""
    with contextlib.closing(socket.socket()) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
