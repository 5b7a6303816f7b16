"""Client cost (encode + send + receive per request and per candidate) and server CPU."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelcaliper.cli.run import build_run_parser
from modelcaliper.config import build_spec, option_table
from modelcaliper.sweep.cost import ClientCost, measure_client_cost, process_cpu_s
from modelcaliper.targets import EmbeddedServer
from modelcaliper.targets.affinity import CpuPlan


@pytest.fixture(scope="module")
def served(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``caliper serve-model`` on the test model."""
    with EmbeddedServer(model, protocol="v2-rest", cpus=CpuPlan(),
                        log_dir=tmp_path_factory.mktemp("cost-server")) as endpoint:
        yield endpoint


def spec_for(endpoint: Any, protocol: str, *extra: str) -> Any:
    parser = build_run_parser()
    url = endpoint.grpc_url if protocol.endswith("-grpc") else endpoint.http_url
    args = parser.parse_args(["--target", url, "--protocol", protocol, "--model",
                              endpoint.model, *extra])
    return build_spec(args, option_table(parser)), url


def test_process_cpu_counts_this_process() -> None:
    before = process_cpu_s(os.getpid())
    assert before is not None
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    after = process_cpu_s(os.getpid())
    assert after is not None and after - before >= 0.02  # clock ticks of 10 ms
    assert process_cpu_s(None) is None
    assert process_cpu_s(2**22 + 12345) is None  # beyond pid_max: no such process


@pytest.mark.parametrize(("protocol", "extra"), [
    # protobuf over gRPC, one row per request
    ("v2-grpc", ("--batch-size", "1")),
    # JSON over HTTP, gzip, 16 rows per request
    ("v2-rest", ("--batch-size", "16", "--compression", "gzip")),
    # fan-out: queries of 40 candidates in requests of 10
    ("v2-rest", ("--batch-size", "10", "--candidates", "40", "--encoding", "binary")),
])
def test_client_cost_of_a_configuration(served: Any, protocol: str,
                                        extra: tuple[str, ...]) -> None:
    spec, url = spec_for(served, protocol, *extra)
    cost = measure_client_cost(spec, served.signature, served.model, url)
    assert cost.requests_sent >= 8 and cost.requests_encoded >= 8
    assert cost.encode_us > 0 and cost.send_receive_us is not None and cost.send_receive_us > 0
    assert cost.rows_per_request == spec.load.batch_size
    assert cost.per_candidate_us == pytest.approx(cost.per_request_us / spec.load.batch_size)
    # a microsecond to a few tens of milliseconds per request: CPU, not waiting
    assert 1.0 < cost.per_request_us < 50_000


def test_cost_arithmetic() -> None:
    cost = ClientCost(encode_us=20.0, send_receive_us=80.0, rows_per_request=25.0,
                      requests_encoded=64, requests_sent=64, request_bytes=1000.0)
    assert cost.per_request_us == 100.0 and cost.per_candidate_us == 4.0
    record = cost.describe()
    assert record["us_per_candidate"] == 4.0 and record["encode_us_per_request"] == 20.0
    unanswered = ClientCost(20.0, None, 1.0, 64, 64, 10.0)
    assert unanswered.per_request_us is None and unanswered.per_candidate_us is None
