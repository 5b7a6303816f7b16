"""CPU pinning: keep the load generator and the server it measures off each other's cores.

A load generator and a model server on the same machine compete for CPU: the server's model
threads can delay the generator's sends (schedule lag), and the generator's busy-waiting
steals cycles from the model. With at least two CPUs, an embedded run therefore pins them
apart by default: the server gets the **last half** of the CPUs this process may use
(at least one), the generator — this process and every worker process it starts, which
inherit the setting — gets the rest. On a 2-core machine: server on CPU 1, generator on
CPU 0. ``--server-cpus`` / ``--client-cpus`` choose the sets (give one and the other is the
remainder), ``--no-pin`` turns pinning off. With one CPU nothing is pinned.

The server is pinned *before* it runs any code: it is started through a tiny launcher
(``launch_prefix``) that sets its own affinity and then ``exec``s the server, the way
``taskset`` does, so every thread the server later creates inherits the set. The launcher
can also ask the kernel to send the server SIGTERM when the process that started it dies
(``PR_SET_PDEATHSIG``), so a generator killed with SIGKILL does not leave a server behind.
The kernel ties that signal to the *thread* that started the server, so it is only asked
for when the server is started from the main thread; from another thread (which may end
before the server should) the server is stopped by ``close()`` and ``atexit`` alone.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcaliper.errors import UsageError

__all__ = [
    "CpuPlan",
    "available_cpus",
    "can_pin",
    "cpus_of",
    "format_cpu_list",
    "launch_prefix",
    "parse_cpu_list",
    "pin_current_process",
    "plan_cpus",
]

# Run by ``sys.executable -c`` in the child: stdlib only, so it starts in a few ms.
# argv: [-c, cpus or "-", parent pid or "0", "--", command...]
_LAUNCHER = """\
import os, signal, sys
cpus, parent, command = sys.argv[1], int(sys.argv[2]), sys.argv[4:]
if parent:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(1)
if cpus != "-":
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
try:
    os.execvp(command[0], command)
except OSError as exc:
    print(f"error: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr, flush=True)
    sys.exit(127)
"""


def can_pin() -> bool:
    """Whether this platform can pin processes to CPUs (Linux)."""
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on, sorted (empty where that cannot be asked)."""
    if not can_pin():
        return ()
    return tuple(sorted(os.sched_getaffinity(0)))


def parse_cpu_list(text: str, flag: str = "--server-cpus") -> tuple[int, ...]:
    """``"0-2,5"`` → ``(0, 1, 2, 5)``; UsageError naming ``flag`` for anything else."""
    cpus: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise UsageError(f"{flag} must list CPUs like 0-2,5, got {text!r}") from None
        if first < 0 or last < first:
            raise UsageError(f"{flag} must list CPUs like 0-2,5, got {text!r}")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise UsageError(f"{flag} must name at least one CPU, got {text!r}")
    return tuple(sorted(cpus))


def format_cpu_list(cpus: Iterable[int]) -> str:
    """``(0, 1, 2, 5)`` → ``"0-2,5"``, the notation of ``taskset -c`` and /proc."""
    ordered = sorted(set(cpus))
    ranges: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        ranges.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(ranges)


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the server and the load generator run on; empty means not pinned."""

    server_cpus: tuple[int, ...] = ()
    client_cpus: tuple[int, ...] = ()
    note: str = "not pinned"

    @property
    def pinned(self) -> bool:
        """Whether anything is pinned."""
        return bool(self.server_cpus or self.client_cpus)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of what was applied, for the run's summary."""
        return {
            "server_cpus": format_cpu_list(self.server_cpus) or None,
            "client_cpus": format_cpu_list(self.client_cpus) or None,
            "note": self.note,
        }


def _cpus_from(value: str | Sequence[int] | None, flag: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_cpu_list(value, flag)
    cpus = tuple(sorted({int(c) for c in value}))
    if not cpus or cpus[0] < 0:
        raise UsageError(f"{flag} must name at least one CPU ≥ 0, got {list(value)}")
    return cpus


def plan_cpus(
    server_cpus: str | Sequence[int] | None = None,
    client_cpus: str | Sequence[int] | None = None,
    *,
    pin: bool = True,
    available: Sequence[int] | None = None,
) -> CpuPlan:
    """Decide the pinning (see the module docstring); UsageError for impossible requests."""
    asked = server_cpus is not None or client_cpus is not None
    if not pin:
        if asked:
            flag = "--server-cpus" if server_cpus is not None else "--client-cpus"
            raise UsageError(f"{flag} cannot be combined with --no-pin")
        return CpuPlan(note="not pinned (--no-pin)")
    cpus = tuple(sorted(set(available))) if available is not None else available_cpus()
    if not cpus:
        if asked:
            raise UsageError("--server-cpus/--client-cpus need Linux (sched_setaffinity); "
                             "this platform cannot pin processes")
        return CpuPlan(note="not pinned: this platform cannot pin processes")
    server = _cpus_from(server_cpus, "--server-cpus")
    client = _cpus_from(client_cpus, "--client-cpus")
    for flag, chosen in (("--server-cpus", server), ("--client-cpus", client)):
        outside = sorted(set(chosen or ()) - set(cpus))
        if outside:
            raise UsageError(f"{flag} names CPU {format_cpu_list(outside)}, which this process "
                             f"may not use (available: {format_cpu_list(cpus)})")
    if server is None and client is None:
        if len(cpus) < 2:
            return CpuPlan(note="not pinned: one CPU available, server and generator share it")
        count = max(1, len(cpus) // 2)
        return CpuPlan(cpus[-count:], cpus[:-count],
                       "default: server on the last half of the CPUs, generator on the rest")
    if server is None or client is None:
        given, flag = (server, "--server-cpus") if server is not None else (client,
                                                                            "--client-cpus")
        assert given is not None
        rest = tuple(c for c in cpus if c not in given)
        if not rest:
            raise UsageError(f"{flag} {format_cpu_list(given)} takes every available CPU; "
                             f"leave one for the {'generator' if server else 'server'} or "
                             "pass both --server-cpus and --client-cpus")
        server, client = (given, rest) if server is not None else (rest, given)
        return CpuPlan(server, client, f"{flag} given, the other side on the remaining CPUs")
    shared = set(server) & set(client)
    note = "--server-cpus and --client-cpus given"
    if shared:
        note += f" (CPU {format_cpu_list(shared)} shared: they compete there)"
    return CpuPlan(server, client, note)


def pin_current_process(cpus: Sequence[int]) -> tuple[int, ...]:
    """Pin every thread of this process to ``cpus``; returns the previous set (to restore).

    ``sched_setaffinity(0, ...)`` changes only the calling thread, so each thread already
    running (runtime pools, gRPC) is pinned by its id; threads and processes started later
    inherit the set from their parent.
    """
    previous = available_cpus()
    wanted = set(cpus)
    try:
        thread_ids = [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        thread_ids = [0]
    for tid in thread_ids:
        try:
            os.sched_setaffinity(tid, wanted)
        except (ProcessLookupError, PermissionError):
            continue  # the thread ended meanwhile
    return previous


def cpus_of(pid: int) -> tuple[int, ...]:
    """The CPUs process ``pid`` may run on, from ``/proc/<pid>/status`` (its main thread)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return parse_cpu_list(line.split(":", 1)[1], "Cpus_allowed_list")
    return ()


def launch_prefix(cpus: Sequence[int] = (), *, die_with_parent: bool = True) -> list[str]:
    """The argv to put before a command so it starts pinned to ``cpus`` (and dies with us)."""
    pin = ",".join(str(c) for c in sorted(set(cpus))) if cpus and can_pin() else "-"
    main = threading.current_thread() is threading.main_thread()
    parent = os.getpid() if die_with_parent and main and sys.platform.startswith("linux") else 0
    return [sys.executable, "-c", _LAUNCHER, pin, str(parent), "--"]
