"""What every target has in common: the ``Endpoint`` it yields and the ``Target`` protocol.

A *target* is the system under test. ``open()`` makes it ready (starting a process when the
target is ours to start) and returns an ``Endpoint``: where load goes, the protocol, the
model and its signature, plus whatever else is known about the server (its HTTP and gRPC
addresses, its Prometheus metrics URL, its process id, the CPUs it was pinned to).
``close()`` releases whatever ``open()`` started and may be called any number of times.
``logs_tail(n)`` returns the last lines the server logged, when we hold its logs.

Targets are context managers: ``with target as endpoint:`` opens and always closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Endpoint", "Target", "TargetBase"]


@dataclass(frozen=True)
class Endpoint:
    """Where load goes: base URL, protocol, model, the signature, and the server's facts."""

    url: str
    protocol: str
    model: str
    signature: Any = None
    http_url: str | None = None
    grpc_url: str | None = None
    metrics_url: str | None = None
    pid: int | None = None
    pinning: dict[str, Any] | None = field(default=None, compare=False)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready dict of the endpoint's facts (the signature left out)."""
        facts: dict[str, Any] = {"url": self.url, "protocol": self.protocol,
                                 "model": self.model}
        for key in ("http_url", "grpc_url", "metrics_url", "pid", "pinning"):
            value = getattr(self, key)
            if value is not None:
                facts[key] = value
        return facts


@runtime_checkable
class Target(Protocol):
    """A system under test: ``open`` yields its endpoint, ``close`` releases it."""

    def open(self) -> Endpoint:
        """Make the target ready and return where to send load; TargetError if it cannot."""
        ...

    def close(self) -> None:
        """Release whatever ``open`` started; safe to call more than once."""
        ...

    def logs_tail(self, n: int = 20) -> list[str]:
        """The last ``n`` lines the target logged (empty when its logs are not ours)."""
        ...

    def __enter__(self) -> Endpoint:
        """Open the target."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Close the target."""
        ...


class TargetBase:
    """Context-manager plumbing shared by the targets: ``with t as endpoint`` opens and closes."""

    def open(self) -> Endpoint:
        """Make the target ready and return its endpoint."""
        raise NotImplementedError

    def close(self) -> None:
        """Release whatever ``open`` started."""

    def logs_tail(self, n: int = 20) -> list[str]:
        """No logs by default."""
        return []

    def __enter__(self) -> Endpoint:
        """Open the target; a failed open still closes whatever it started."""
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        """Close the target whatever happened inside the block."""
        self.close()
