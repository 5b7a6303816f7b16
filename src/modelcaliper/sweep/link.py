"""A rate-limited link for ``caliper sweep --link 100mbit``: payload effects measured, not guessed.

The embedded server runs in a network namespace of its own, reached over a veth pair whose
two ends each carry a token-bucket filter (``tc qdisc ... tbf``) at the given rate: requests
are limited on the way in, answers on the way out, as on a real link of that speed. The
server binds the namespace's own address (not 127.0.0.1, which would stay inside the
namespace); the generator stays in the host's namespace and connects to that address::

    generator ── 10.213.x.1 ═[tbf]═ veth ═[tbf]═ 10.213.x.2 ── serve-model (namespace)

Only the bandwidth is emulated. Delay and loss need ``netem``, which this machine's kernel
does not have (``describe()`` says whether it does); the round trip is the veth's, tens of
microseconds.

Setting up needs root (``CAP_NET_ADMIN``) and the ``ip`` and ``tc`` commands; without them
``check_link_support`` raises a UsageError saying so, before anything starts. The namespace
(and with it both veth ends and their qdiscs) is deleted by ``close()``, which the sweep
calls in a ``finally`` and which is also registered with ``atexit``; namespaces left by a
sweep that was killed outright are removed by the next one (``remove_stale``): their names
carry the process id that made them.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from modelcaliper.errors import UsageError

__all__ = ["NAMESPACE_PREFIX", "LinkAddresses", "RateLimitedLink", "check_link_support",
           "remove_stale"]

NAMESPACE_PREFIX = "caliper-link-"
"""Namespaces this module creates are named ``caliper-link-<pid>``."""

_SUBNETS = ipaddress.IPv4Network("10.213.0.0/16")
_QUEUE_S = 0.1  # how much the bucket's queue may hold, in seconds at the link rate
_COMMAND_TIMEOUT_S = 20.0


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--link: cannot run '{' '.join(argv)}': {exc}") from None
    if check and done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
        raise UsageError(f"--link: '{' '.join(argv)}' failed: {detail}")
    return done


def check_link_support() -> None:
    """Raise a UsageError unless this process can build a rate-limited namespace link."""
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        raise UsageError(f"--link needs the {' and '.join(missing)} command(s) (iproute2); "
                         "install iproute2 or drop --link")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise UsageError("--link needs root: it creates a network namespace, a veth pair and "
                         "tc token-bucket limits (CAP_NET_ADMIN); run the sweep as root or "
                         "drop --link (caliper payload --link estimates the effect instead)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete ``caliper-link-<pid>`` namespaces whose process is gone; their names."""
    listed = _run("ip", "netns", "list", check=False)
    removed = []
    for line in listed.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        suffix = name.removeprefix(NAMESPACE_PREFIX)
        if name.startswith(NAMESPACE_PREFIX) and suffix.isdigit() and not _alive(int(suffix)):
            _run("ip", "netns", "del", name, check=False)
            removed.append(name)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Networks of this host's IPv4 addresses and routes (to pick a subnet clear of them)."""
    used = []
    for argv in (("ip", "-4", "-o", "addr", "show"), ("ip", "-4", "route", "show")):
        for word in _run(*argv, check=False).stdout.split():
            with contextlib.suppress(ValueError):
                network = ipaddress.ip_network(word, strict=False)
                if isinstance(network, ipaddress.IPv4Network) and word[0].isdigit():
                    used.append(network)
    return used


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    subnets = list(_SUBNETS.subnets(new_prefix=30))
    start = os.getpid() % len(subnets)
    for offset in range(len(subnets)):
        candidate = subnets[(start + offset) % len(subnets)]
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise UsageError(f"--link: no free /30 left in {_SUBNETS} for the namespace link")


@dataclass(frozen=True)
class LinkAddresses:
    """The namespace and both ends of the link."""

    namespace: str
    host_interface: str
    namespace_interface: str
    host_address: str
    server_address: str


class RateLimitedLink:
    """A namespace behind a veth pair limited to ``rate_bits_per_s`` each way (see above)."""

    def __init__(self, rate_bits_per_s: float) -> None:
        if not rate_bits_per_s > 0:
            raise UsageError(f"--link must be above zero, got {rate_bits_per_s}")
        self.rate_bits_per_s = float(rate_bits_per_s)
        self.addresses: LinkAddresses | None = None
        self.netem: bool | None = None

    @property
    def wrapper(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        if self.addresses is None:
            raise RuntimeError("the link is not open")
        return ["ip", "netns", "exec", self.addresses.namespace]

    def _tbf(self, device: str, namespace: str | None) -> None:
        rate_bytes_per_s = self.rate_bits_per_s / 8
        # The bucket must hold at least one timer tick's worth at the rate (HZ may be 100).
        burst_bytes = max(int(rate_bytes_per_s / 100), 4 * 1514)
        limit_bytes = max(int(rate_bytes_per_s * _QUEUE_S), 2 * burst_bytes)
        where = ["-n", namespace] if namespace else []
        _run("tc", *where, "qdisc", "replace", "dev", device, "root", "tbf",
             "rate", f"{int(self.rate_bits_per_s)}bit", "burst", str(burst_bytes),
             "limit", str(limit_bytes))

    def _probe_netem(self, device: str, namespace: str) -> bool:
        done = _run("tc", "-n", namespace, "qdisc", "add", "dev", device, "root", "netem",
                    "delay", "1ms", check=False)
        if done.returncode == 0:
            _run("tc", "-n", namespace, "qdisc", "del", "dev", device, "root", check=False)
        return done.returncode == 0

    def open(self) -> LinkAddresses:
        """Create the namespace, the veth pair, their addresses and both rate limits."""
        check_link_support()
        remove_stale()
        pid = os.getpid()
        namespace = f"{NAMESPACE_PREFIX}{pid}"
        host_if, ns_if = f"clk{pid % 10**9}a", f"clk{pid % 10**9}b"
        subnet = _free_subnet()
        host_ip, server_ip = (str(a) for a in list(subnet.hosts())[:2])
        atexit.register(self.close)
        self.addresses = LinkAddresses(namespace, host_if, ns_if, host_ip, server_ip)
        try:
            _run("ip", "netns", "add", namespace)
            _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _run("ip", "link", "set", ns_if, "netns", namespace)
            _run("ip", "addr", "add", f"{host_ip}/{subnet.prefixlen}", "dev", host_if)
            _run("ip", "link", "set", host_if, "up")
            _run("ip", "-n", namespace, "addr", "add", f"{server_ip}/{subnet.prefixlen}",
                 "dev", ns_if)
            _run("ip", "-n", namespace, "link", "set", ns_if, "up")
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
            self.netem = self._probe_netem(ns_if, namespace)
            self._tbf(host_if, None)
            self._tbf(ns_if, namespace)
        except BaseException:
            self.close()
            raise
        return self.addresses

    def close(self) -> None:
        """Delete the namespace (its veth end, and so the pair, goes with it); idempotent."""
        addresses = self.addresses
        if addresses is None:
            return
        _run("ip", "netns", "del", addresses.namespace, check=False)
        # Should the pair outlive the namespace (it does not on Linux), remove our end too.
        if _run("ip", "link", "show", addresses.host_interface, check=False).returncode == 0:
            _run("ip", "link", "del", addresses.host_interface, check=False)
        self.addresses = None
        atexit.unregister(self.close)

    def sent_bytes(self) -> tuple[int, int] | None:
        """Bytes the link has carried so far: (toward the server, back from it); None if closed.

        Read from the two token-bucket qdiscs' counters, so they are the bytes really put on
        the wire (headers, compression and retransmissions included), not an estimate.
        """
        addresses = self.addresses
        if addresses is None:
            return None
        counts = []
        for where, device in (([], addresses.host_interface),
                              (["-n", addresses.namespace], addresses.namespace_interface)):
            text = _run("tc", *where, "-s", "qdisc", "show", "dev", device, check=False).stdout
            words = text.split()
            try:
                counts.append(int(words[words.index("Sent") + 1]))
            except (ValueError, IndexError):
                return None
        return counts[0], counts[1]

    def __enter__(self) -> LinkAddresses:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record: rate, addresses, and what is not emulated."""
        from modelcaliper.units import format_link_rate

        record: dict[str, Any] = {"rate_bits_per_s": self.rate_bits_per_s,
                                  "rate": format_link_rate(self.rate_bits_per_s),
                                  "method": "network namespace + veth pair, tc tbf each way"}
        if self.addresses is not None:
            record.update(namespace=self.addresses.namespace,
                          server_address=self.addresses.server_address,
                          client_address=self.addresses.host_address)
        record["delay"] = ("not emulated: netem is not available on this kernel"
                           if self.netem is False else "not emulated")
        return record
