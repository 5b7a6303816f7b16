"""What sweeps must show on real servers: batching economics, the link, a known capacity.

- batch size: the server's time per request grows much slower than the batch (sub-linear),
  while the client's CPU per candidate falls;
- a 100 Mbit/s link (namespace + tc tbf, root only): a compressed binary encoding moves far
  fewer bytes than JSON and, where JSON saturates the link, has the lower p99 and fewer
  deadline misses;
- capacity search against the ground-truth server with one worker and a constant 5 ms
  service time (capacity exactly 200 requests/s) lands within 10 % of it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from modelcaliper.load.http import HttpTransport
from modelcaliper.load.spec import LoadSpec
from modelcaliper.load.summary import build_summary
from modelcaliper.load.workers import run_load_async
from modelcaliper.sweep.capacity import SearchSettings, Step, search_capacity
from modelcaliper.sweep.early_stop import EarlyStop, StopRule, Watch
from modelcaliper.sweep.link import NAMESPACE_PREFIX
from modelcaliper.testing.fidelity import POOL
from modelcaliper.testing.groundtruth import GroundTruthProcess
from tests.sweep.helpers import figures, sweep

pytestmark = pytest.mark.slow


def test_batching_is_sub_linear_on_the_server_and_cheaper_per_candidate_on_the_client(
        wide_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _, document = sweep(tmp_path, capsys, str(wide_model), "--batch-size", "1,10,50",
                                   "--protocol", "v2-grpc", "--rps", "100", "--slo", "p99<1s",
                                   "--duration", "10s", "--quiet")
    assert code == 0, out
    assert document is not None
    by_batch = {b: figures(document, batch_size=b)[0] for b in (1, 10, 50)}
    server_ms = {b: f["server_ms_per_request"] for b, f in by_batch.items()}
    client = {b: f["client_cpu_us_per_candidate"] for b, f in by_batch.items()}
    # 50 times the rows costs the server more per request, but far less than 50 times
    assert server_ms[50] > server_ms[1]
    assert server_ms[50] < 10 * server_ms[1]
    assert by_batch[50]["server_ms_per_candidate"] < by_batch[10]["server_ms_per_candidate"] \
        < by_batch[1]["server_ms_per_candidate"]
    # the client's per-request work is spread over more candidates
    assert client[50] < client[10] < client[1]
    assert client[1] > 5 * client[50]


def _links() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listed.splitlines()
            if line.startswith(f"{NAMESPACE_PREFIX}{os.getpid()}")]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="a rate-limited link needs root (network namespace, tc)")
def test_on_a_100mbit_link_compressed_binary_beats_json(
        wide_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 4 requests of 50 × 300 features per query: ~600 kB of JSON, ~215 kB of gzipped binary.
    # At 25 queries/s JSON needs ~120 % of the link, binary with gzip ~45 %.
    code, out, _, document = sweep(
        tmp_path, capsys, str(wide_model), "--protocol", "v2-rest", "--encoding",
        "json,binary", "--compression", "none,gzip", "--candidates", "200", "--batch-size",
        "50", "--deadline", "150ms", "--rps", "25", "--slo", "query_p90<150ms",
        "--min-requests", "100", "--duration", "8s", "--link", "100mbit", "--quiet")
    assert document is not None, out
    assert not _links(), "the namespace outlived the sweep"
    assert document["link"]["rate_bits_per_s"] == 100e6
    assert document["link"]["delay"].startswith("not emulated")
    json_plain = figures(document, encoding="json", compression="none")[0]
    binary_gzip = figures(document, encoding="binary", compression="gzip")[0]
    # fewer bytes, by the codec's count and by the link's own counters
    assert binary_gzip["request_bytes"] < 0.5 * json_plain["request_bytes"]
    assert binary_gzip["link_bytes_up_per_request"] \
        < 0.5 * json_plain["link_bytes_up_per_request"]
    # the link carried every body of the unsaturated run, plus headers and acknowledgements
    assert binary_gzip["link_bytes_up_per_request"] >= binary_gzip["request_bytes"]
    # and it shows in the tail and in the deadline
    assert binary_gzip["query_p99_ms"] < json_plain["query_p99_ms"]
    assert binary_gzip["deadline_miss_rate"] < json_plain["deadline_miss_rate"]
    assert json_plain["deadline_miss_rate"] > 0.5
    ranked = [row["label"] for row in document["recommendation"]["ranked"]]
    assert ranked.index("v2-rest binary gzip") < ranked.index("v2-rest json")


def _measure(server: GroundTruthProcess, rate: float) -> Step:
    """One early-stopped open-loop run at ``rate`` against the server; SLO p99 < 50 ms."""
    spec = LoadSpec(arrival="constant", rate_per_s=rate, duration_s=10.0, warmup_s=0.5,
                    timeout_s=5.0, connections=64, seed=1)
    plan = spec.plan()
    sink = EarlyStop(StopRule(), [Watch("p99", 99.0, False, 50.0, "<")])

    async def drive() -> Any:
        transport = HttpTransport(server.url, connections=64)
        await transport.start()
        try:
            return await run_load_async(spec, plan, POOL, transport, progress=sink.update)
        finally:
            await transport.close()

    server.reset()
    result = asyncio.run(drive())
    summary = build_summary(result, spec, plan)
    p99 = summary["latency_ms"]["p99"]
    return Step(rate, p99 is not None and p99 < 50.0, p99, summary["throughput"]["ok_rps"])


def test_capacity_search_finds_a_known_capacity() -> None:
    # one worker, 5 ms each: 200 requests/s and not one more
    with GroundTruthProcess("constant:5ms", workers=1) as server:
        found = search_capacity(lambda rate: _measure(server, rate),
                                SearchSettings(start_rps=100.0, tolerance=0.05))
    assert found.capacity_rps is not None
    assert abs(found.capacity_rps - 200.0) <= 20.0, found.describe()
    assert found.high_rps is not None and found.high_rps / found.capacity_rps <= 1.05
    knee = found.knee()
    assert knee is not None and 150.0 <= knee["rate_per_s"] <= 220.0
