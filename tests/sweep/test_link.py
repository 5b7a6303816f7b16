"""The rate-limited link: set up with tc tbf both ways, always cleaned up, refused without root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from modelcaliper.errors import UsageError
from modelcaliper.sweep import link as link_module
from modelcaliper.sweep.link import NAMESPACE_PREFIX, RateLimitedLink, check_link_support

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="network namespaces and tc need root")


def _namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.split()]


def _qdisc(*argv: str) -> str:
    return subprocess.run(["tc", *argv, "qdisc", "show"], capture_output=True,
                          text=True).stdout


def test_without_root_the_message_says_what_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UsageError) as caught:
        check_link_support()
    message = str(caught.value)
    assert message.startswith("--link needs root: it creates a network namespace, a veth pair "
                              "and tc token-bucket limits (CAP_NET_ADMIN)")
    assert "drop --link" in message and "\n" not in message
    with pytest.raises(UsageError):
        RateLimitedLink(100e6).open()


def test_without_iproute2_the_message_names_the_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "tc" else "/sbin/ip")
    with pytest.raises(UsageError, match="--link needs the tc command\\(s\\) \\(iproute2\\)"):
        check_link_support()


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(UsageError, match="--link must be above zero"):
        RateLimitedLink(0)


@needs_root
def test_the_link_limits_both_ways_and_goes_away() -> None:
    link = RateLimitedLink(100e6)
    addresses = link.open()
    try:
        assert addresses.namespace == f"{NAMESPACE_PREFIX}{os.getpid()}"
        assert addresses.namespace in _namespaces()
        host = _qdisc("-s")
        inside = _qdisc("-n", addresses.namespace, "-s")
        for text, device in ((host, addresses.host_interface),
                             (inside, addresses.namespace_interface)):
            line = next(line for line in text.splitlines() if f"dev {device} " in line)
            assert "tbf" in line and "rate 100Mbit" in line
        # the server's address answers from the host side (a listener inside the namespace)
        listener = subprocess.Popen(
            [*link.wrapper, sys.executable, "-c",
             "import socket; s = socket.create_server(('" + addresses.server_address
             + "', 0)); print(s.getsockname()[1], flush=True); c, _ = s.accept(); "
             "c.sendall(b'x' * 200000); c.close()"], stdout=subprocess.PIPE, text=True)
        assert listener.stdout is not None
        port = int(listener.stdout.readline())
        before = link.sent_bytes()
        import socket

        with socket.create_connection((addresses.server_address, port), timeout=10) as conn:
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
        listener.wait(10)
        after = link.sent_bytes()
        assert len(received) == 200000
        assert before is not None and after is not None
        assert after[1] - before[1] >= 200000  # the answer crossed the server's side
        assert "not emulated" in link.describe()["delay"]
    finally:
        link.close()
    assert addresses.namespace not in _namespaces()
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True).stdout
    assert addresses.host_interface not in links
    link.close()  # idempotent
    assert link.sent_bytes() is None


@needs_root
def test_a_failed_set_up_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: RateLimitedLink, device: str, namespace: str | None) -> None:
        raise UsageError("--link: tc failed")

    monkeypatch.setattr(RateLimitedLink, "_tbf", broken)
    with pytest.raises(UsageError, match="tc failed"):
        RateLimitedLink(10e6).open()
    assert f"{NAMESPACE_PREFIX}{os.getpid()}" not in _namespaces()


@needs_root
def test_namespaces_of_dead_sweeps_are_removed() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = f"{NAMESPACE_PREFIX}{gone.pid}"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        removed = link_module.remove_stale()
        assert stale in removed
        assert stale not in _namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)


@needs_root
def test_a_terminated_sweep_leaves_no_namespace(tmp_path: pytest.TempPathFactory,
                                                model: object) -> None:
    runs = tmp_path / "runs"  # type: ignore[operator]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "modelcaliper.cli.main", "sweep", str(model), "--link",
         "100mbit", "--protocol", "v2-rest", "--batch-size", "1,2", "--rps", "20",
         "--no-early-stop", "--duration", "30s", "--runs-dir", str(runs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    namespace = f"{NAMESPACE_PREFIX}{process.pid}"
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("server started"):
            break
    assert namespace in _namespaces(), seen
    process.send_signal(15)  # SIGTERM
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert namespace not in _namespaces()
    documents = list((runs / "sweeps").glob("*/sweep.json"))
    assert len(documents) == 1 and b'"status": "interrupted"' in documents[0].read_bytes()
