"""Overload: ``caliper serve-model`` at twice its capacity sheds load, holds memory, recovers.

The server (ONNX MLP 300 → 256 → 128 → 1, batch 25, default ``--max-queued-requests``) runs on
core 1; this client, on core 0, speaks v2 REST binary through our ``HttpTransport``.

1. Saturation: a closed loop at ``--saturation-concurrency`` requests in flight (fewer than
   the server's queue holds, so nothing is shed) for ``--saturation-s``; its successful
   requests per second are the saturation rate R.
2. Open loop on a fixed schedule, computed before it starts (``load.schedule.Steps``, evenly
   spaced): 0.5 R for ``--pre-s`` (the baseline), 2 R for ``--overload-s``, 0.5 R for
   ``--post-s``. Each request is sent at its intended time whatever the earlier ones are
   doing (the sender wakes every millisecond and sends all that is due), and its latency runs
   from that intended time, so a late send counts against it. The client keeps 512 keep-alive
   connections; a request due while all of them carry one is dropped and counted rather than
   queued, so a backlog after the overload can only be the server's, never the client's.
3. Checks, printed with their figures:
   * the server sheds load: a share of the requests sent during the overload is answered
     503 at once, and no request times out or fails otherwise;
   * its resident memory (``VmRSS`` of /proc/PID/status, sampled every 200 ms) stays under
     ``--rss-ceiling-mib`` (512 MiB by default; the idle server holds about 150 MiB);
   * recovery: requests sent after the overload are grouped in 0.5 s windows of intended
     send time, one starting every 0.1 s; the server has recovered at the start of the first
     window with nothing shed and a p50 within 1.2 × the baseline p50 (last 4 s of the first
     phase). That must happen within 2 s of the overload's end, and the requests sent in the
     2 s from then on must all succeed with a p50 within 1.2 × the baseline too (a single
     lucky window is not a recovery).

Printed per phase: the server's CPU use and the time its threads waited for a CPU (on a
shared machine, what other processes took from it), and the client's CPU use.

Run: ``.venv/bin/python bench/server_overload.py [--overload-s 20] [--post-s 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import _servers as sv
import numpy as np

from modelcaliper.load.schedule import Steps
from modelcaliper.load.transport import PreparedRequest, Status

ENCODING = "v2-rest binary"
CONNECTIONS = 512
TIMEOUT_S = 5.0
RSS_PERIOD_S = 0.2
TICK_S = 0.001
WINDOW_S = 0.5
STEP_S = 0.1
RECOVERY_FACTOR = 1.2
RECOVERY_LIMIT_S = 2.0
HOLD_S = 2.0


@dataclass
class OpenLoopRecords:
    """One row per scheduled request; times in ns from the run's start."""

    intended_ns: np.ndarray
    sent_ns: np.ndarray
    done_ns: np.ndarray
    status: np.ndarray
    code: np.ndarray  # HTTP status as a number, 0 when there was none

    @property
    def latency_ms(self) -> np.ndarray:
        """Completion minus intended send time."""
        return (self.done_ns - self.intended_ns) / 1e6


async def open_loop(transport: sv.HttpTransport, request: PreparedRequest,
                    offsets_s: np.ndarray, pid: int) -> tuple[OpenLoopRecords, list[tuple]]:
    """Send at ``offsets_s`` regardless of answers; sample the server's RSS meanwhile."""
    n = len(offsets_s)
    intended = (offsets_s * 1e9).astype(np.int64)
    sent, done = np.zeros(n, np.int64), np.zeros(n, np.int64)
    status, code = np.full(n, -1, np.int8), np.zeros(n, np.int16)
    rss: list[tuple[float, int, float, float, float]] = []
    loop = asyncio.get_running_loop()
    in_flight = 0
    start_ns = time.perf_counter_ns()

    async def one(i: int) -> None:
        nonlocal in_flight
        try:
            outcome = await sv.send(transport, request, timeout_s=TIMEOUT_S)
        finally:
            in_flight -= 1
        sent[i] = outcome.sent_ns - start_ns if outcome.sent_ns else 0
        done[i] = (outcome.done_ns or time.perf_counter_ns()) - start_ns
        status[i] = int(outcome.status)
        code[i] = int(outcome.code) if outcome.code.isdigit() else 0

    async def sample_rss() -> None:
        while True:
            rss.append(((time.perf_counter_ns() - start_ns) / 1e9, sv.rss_bytes(pid),
                        sv.cpu_seconds(pid), time.process_time(), sv.run_delay_seconds(pid)))
            await asyncio.sleep(RSS_PERIOD_S)

    sampler = loop.create_task(sample_rss())
    pending: set[asyncio.Task[None]] = set()
    i = 0
    while i < n:
        now = time.perf_counter_ns() - start_ns
        while i < n and intended[i] <= now:  # everything due, even if we woke up late
            if in_flight >= CONNECTIONS:
                # Every connection is busy: drop rather than queue in the client, so that a
                # backlog after the overload can only be the server's (see the docstring).
                status[i], done[i] = Status.DROPPED, now
            else:
                in_flight += 1
                task = loop.create_task(one(i))
                pending.add(task)
                task.add_done_callback(pending.discard)
            i += 1
        if i < n:
            # Wake at most once a millisecond and send everything due by then: a wake-up per
            # request costs the client more than the request itself at thousands per second.
            # The intended times stay exact; the late send counts against latency as lag.
            wait_s = (intended[i] - (time.perf_counter_ns() - start_ns)) / 1e9
            await asyncio.sleep(max(TICK_S, wait_s))
    await asyncio.gather(*pending)
    sampler.cancel()
    return OpenLoopRecords(intended, sent, done, status, code), rss


async def run(server: sv.Server, args: argparse.Namespace) -> dict:
    """Saturation closed loop, then the open-loop schedule; everything the report needs."""
    request = sv.prepare(ENCODING, sv.batch())
    transport = sv.HttpTransport(f"http://127.0.0.1:{server.http_port}", connections=CONNECTIONS)
    await transport.start()
    idle_rss = sv.rss_bytes(server.pid)
    await sv.closed_loop(transport, request, args.saturation_concurrency, 1.0, 100_000)
    saturation = await sv.closed_loop(transport, request, args.saturation_concurrency,
                                      args.saturation_s, 1_000_000)
    rate = saturation.rate_per_s
    schedule = Steps(((args.pre_s, 0.5 * rate), (args.overload_s, args.factor * rate),
                      (args.post_s, 0.5 * rate)))
    offsets_s = schedule.arrivals(None, np.random.default_rng(0))
    opened_before = transport.connections_opened
    records, rss = await open_loop(transport, request, offsets_s, server.pid)
    reconnects = transport.connections_opened - opened_before
    await transport.close()
    return {"saturation": saturation, "rate": rate, "records": records, "rss": rss,
            "idle_rss": idle_rss, "reconnects": reconnects}


def recovery(records: OpenLoopRecords, baseline_p50_ms: float, end_s: float,
             post_s: float) -> tuple[float | None, list[tuple[float, float, int]]]:
    """Seconds from the overload's end to recovery (None if never), and each window's figures.

    Windows of ``WINDOW_S`` of intended send time start every ``STEP_S``; the first whose
    requests all succeeded with a p50 within ``RECOVERY_FACTOR`` of the baseline marks the
    recovery. Half a second holds several hundred requests, enough for a steady p50 on a
    shared machine where single 100 ms windows jump by ±30 %.
    """
    t_s = records.intended_ns / 1e9
    windows = []
    for k in range(int(round((post_s - WINDOW_S) / STEP_S)) + 1):
        lo = end_s + k * STEP_S
        mask = (t_s >= lo) & (t_s < lo + WINDOW_S)
        ok = mask & (records.status == Status.OK)
        p50 = float(np.median(records.latency_ms[ok])) if ok.any() else float("inf")
        windows.append((k * STEP_S, p50, int((mask & (records.status != Status.OK)).sum())))
    for start_s, p50, failed in windows:
        if failed == 0 and p50 <= RECOVERY_FACTOR * baseline_p50_ms:
            return start_s, windows
    return None, windows


def report(result: dict, args: argparse.Namespace) -> bool:
    """Print the figures and the three verdicts; True when all pass."""
    records: OpenLoopRecords = result["records"]
    rate, saturation = result["rate"], result["saturation"]
    t_s = records.intended_ns / 1e9
    over_lo, over_hi = args.pre_s, args.pre_s + args.overload_s
    phases = {"baseline 0.5R": (t_s >= max(0.0, args.pre_s - 4.0)) & (t_s < over_lo),
              f"overload {args.factor:g}R": (t_s >= over_lo) & (t_s < over_hi),
              "after 0.5R": t_s >= over_hi}
    print(f"model: ONNX MLP 300→256→128→1, batch {sv.ROWS}; {ENCODING}; server on core "
          f"{sv.SERVER_CPU} with its default --max-queued-requests (64); client on core "
          f"{sv.CLIENT_CPU}, {CONNECTIONS} keep-alive connections, timeout {TIMEOUT_S:g} s")
    print(f"saturation (closed loop, {args.saturation_concurrency} in flight, "
          f"{args.saturation_s:g} s): R = {rate:.0f} requests/s, p50 "
          f"{sv.median(saturation.latencies_us) / 1e3:.2f} ms, codes {saturation.codes}")
    print(f"open loop: {args.pre_s:g} s at {0.5 * rate:.0f}/s, {args.overload_s:g} s at "
          f"{args.factor * rate:.0f}/s, {args.post_s:g} s at {0.5 * rate:.0f}/s; "
          f"{len(t_s)} requests; {result['reconnects']} reconnections")
    print(f"{'phase':<15}{'planned':>8}{'ok/s':>8}{'503 share':>11}{'dropped':>9}{'other err':>10}"
          f"{'ok p50 ms':>11}{'ok p99 ms':>11}{'lag p99 ms':>12}")
    latency = records.latency_ms
    lag_ms = np.where(records.sent_ns > 0, (records.sent_ns - records.intended_ns) / 1e6, 0.0)
    samples = np.array(result["rss"])
    for name, mask in phases.items():
        span_s = (t_s[mask].max() - t_s[mask].min()) if mask.sum() > 1 else float("nan")
        inside = samples[(samples[:, 0] >= t_s[mask].min()) & (samples[:, 0] <= t_s[mask].max())]
        if len(inside) > 1:
            wall_s = inside[-1, 0] - inside[0, 0]
            used = (inside[-1, 2:] - inside[0, 2:]) / wall_s
            answered = ((records.done_ns / 1e9 >= inside[0, 0])
                        & (records.done_ns / 1e9 < inside[-1, 0])
                        & (records.code > 0)).sum()
            per_answer_us = (inside[-1, 2] - inside[0, 2]) * 1e6 / max(1, answered)
            print(f"  [{name}: server CPU {used[0]:.0%} of a core ({per_answer_us:.0f} µs per "
                  f"answer) and {used[2]:.0%} waiting for one; client CPU {used[1]:.0%}]")
        ok = mask & (records.status == Status.OK)
        shed = mask & (records.code == 503)
        dropped = mask & (records.status == Status.DROPPED)
        other = mask & (records.status != Status.OK) & (records.code != 503) & ~dropped
        print(f"{name:<15}{int(mask.sum()):>8}{ok.sum() / span_s:>8.0f}"
              f"{shed.sum() / max(1, mask.sum()):>10.1%}{dropped.sum() / max(1, mask.sum()):>9.1%}"
              f"{int(other.sum()):>10}"
              f"{sv.quantile(latency[ok], 0.5):>11.2f}{sv.quantile(latency[ok], 0.99):>11.2f}"
              f"{sv.quantile(lag_ms[mask], 0.99):>12.2f}")

    overload = phases[f"overload {args.factor:g}R"]
    shed_share = float((records.code[overload] == 503).mean())
    failures = int(((records.status != Status.OK) & (records.code != 503)
                    & (records.status != Status.DROPPED)).sum())
    sheds = shed_share > 0 and failures == 0
    print(f"check shedding: {shed_share:.1%} of the overload's requests answered 503, "
          f"{failures} timeouts or other errors in the whole run: {'PASS' if sheds else 'FAIL'}")

    rss = samples[:, 1] / 2**20
    ceiling_ok = rss.max() < args.rss_ceiling_mib
    print(f"check memory: VmRSS idle {result['idle_rss'] / 2**20:.0f} MiB, max "
          f"{rss.max():.0f} MiB over {len(rss)} samples (every {RSS_PERIOD_S:g} s), ceiling "
          f"{args.rss_ceiling_mib} MiB: {'PASS' if ceiling_ok else 'FAIL'}")

    base = phases["baseline 0.5R"] & (records.status == Status.OK)
    baseline_p50 = float(np.median(latency[base]))
    recovered_s, windows = recovery(records, baseline_p50, over_hi, args.post_s)
    timeline = ", ".join(f"{w:.1f}s:{p50:.2f}" + (f"({bad}✗)" if bad else "")
                         for w, p50, bad in windows[::int(round(WINDOW_S / STEP_S))])
    print(f"p50 (ms) of {WINDOW_S:g} s windows of send time after the overload, by window "
          f"start (✗ = requests not OK): {timeline}")
    recovers = recovered_s is not None and recovered_s <= RECOVERY_LIMIT_S
    shown = "never" if recovered_s is None else f"{recovered_s:.1f} s"
    settled = ""
    if recovered_s is not None:
        lo = over_hi + recovered_s
        later = (t_s >= lo) & (t_s < lo + HOLD_S)
        settled_p50 = float(np.median(latency[later & (records.status == Status.OK)]))
        failed_later = int((later & (records.status != Status.OK)).sum())
        recovers &= settled_p50 <= RECOVERY_FACTOR * baseline_p50 and failed_later == 0
        settled = (f"; requests sent in the {HOLD_S:g} s from then on: p50 {settled_p50:.2f} ms "
                   f"({settled_p50 / baseline_p50:.2f}× baseline), {failed_later} not OK")
    print(f"check recovery: baseline p50 {baseline_p50:.2f} ms; p50 back within "
          f"{RECOVERY_FACTOR}× ({RECOVERY_FACTOR * baseline_p50:.2f} ms) with nothing shed "
          f"{shown} after the overload (limit {RECOVERY_LIMIT_S:g} s){settled}: "
          f"{'PASS' if recovers else 'FAIL'}")
    return sheds and ceiling_ok and recovers


def main() -> int:
    """Start the server, measure saturation, run the open-loop schedule, print the checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saturation-concurrency", type=int, default=16)
    parser.add_argument("--saturation-s", type=float, default=5.0)
    parser.add_argument("--pre-s", type=float, default=5.0, help="baseline at 0.5 R")
    parser.add_argument("--overload-s", type=float, default=20.0, help="overload at 2 R")
    parser.add_argument("--factor", type=float, default=2.0, help="overload rate / R")
    parser.add_argument("--post-s", type=float, default=10.0, help="after, at 0.5 R")
    parser.add_argument("--rss-ceiling-mib", type=int, default=512)
    args = parser.parse_args()
    print(f"load average at the start: {sv.load_average()}")
    with tempfile.TemporaryDirectory(prefix="server-overload-") as tmp:
        work = Path(tmp)
        model = sv.build_model(work)
        sv.pin_client()
        server = sv.start_caliper(model, work / "server")
        try:
            sv.check_loopback_only(server)
            result = sv.run_async(run, server, args)
        finally:
            server.stop()
    passed = report(result, args)
    print(f"load average at the end: {sv.load_average()}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
