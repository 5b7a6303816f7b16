"""Sweep plans: the product of the axes, one group per server, a seeded interleaved order."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.errors import UsageError
from modelcaliper.sweep.axes import parse_axes
from modelcaliper.sweep.plan import build_plan, rate_text


def axes(**given: Any) -> Any:
    options: dict[str, Any] = {"protocol": None, "encoding": None, "compression": None,
                               "batch_size": None, "rps": None}
    options.update(given)
    return parse_axes(**options)


def test_every_combination_once_grouped_by_server() -> None:
    parsed = axes(protocol="v2-grpc,v2-rest", compression="none,gzip", batch_size="5,25",
                  rps="20,40", server={"max_batch_size": "32,64"})
    plan = build_plan(parsed, seed=3)
    points = plan.points
    assert len(points) == 2 * 2 * 2 * 2 * 2
    assert [p.index for p in points] == list(range(len(points)))
    keys = Counter((p.wire, p.batch_size, p.rate_per_s, p.server) for p in points)
    assert set(keys.values()) == {1}
    # points of one server configuration run back to back: one server start each
    assert len(plan.groups) == 2
    for server, group in plan.groups:
        assert {p.server for p in group} == {server}
        assert len(group) == 16


def test_the_order_is_seeded_and_interleaved() -> None:
    parsed = axes(protocol="v2-grpc,v2-rest", batch_size="1,5,10,25,50")
    same = [p.config_key for p in build_plan(parsed, seed=7).points]
    assert same == [p.config_key for p in build_plan(parsed, seed=7).points]
    other = [p.config_key for p in build_plan(parsed, seed=8).points]
    assert sorted(same) == sorted(other) and same != other
    # not the axes' own order: drift of the machine does not line up with an axis
    in_axis_order = [f"{w}|batch={b}|default" for w, b in
                     itertools.product(("v2-grpc", "v2-rest"), (1, 5, 10, 25, 50))]
    assert same != in_axis_order


@given(batches=st.lists(st.integers(1, 64), min_size=1, max_size=4, unique=True),
       limits=st.lists(st.integers(1, 64), min_size=1, max_size=3, unique=True),
       seed=st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_plans_cover_exactly_the_feasible_product(batches: list[int], limits: list[int],
                                                  seed: int) -> None:
    parsed = axes(batch_size=",".join(map(str, batches)),
                  server={"max_batch_size": ",".join(map(str, limits))})
    feasible = {(b, m) for b in batches for m in limits if b <= m}
    if not feasible:
        with pytest.raises(UsageError, match="the sweep has no point left"):
            build_plan(parsed, seed=seed)
        return
    plan = build_plan(parsed, seed=seed)
    got = [(p.batch_size, dict(p.server.settings)["max_batch_size"]) for p in plan.points]
    assert sorted(got) == sorted(feasible)
    # each server configuration appears as one contiguous run of points
    servers = [p.server for p in plan.points]
    assert len(plan.groups) == len({s for s in servers})
    assert all(servers[i] == servers[i + 1] or servers[i + 1] not in servers[:i + 1]
               for i in range(len(servers) - 1))


def test_requests_larger_than_the_server_batch_are_left_out_and_said() -> None:
    parsed = axes(batch_size="10,50", server={"max_batch_size": "16,64"})
    plan = build_plan(parsed)
    assert len(plan.points) == 3
    assert plan.skipped == ("batch 50 with max batch 16 left out: the server rejects requests "
                            "larger than its max batch size",)
    # with fan-out a request holds at most the candidates
    assert len(build_plan(parsed, candidates=12).points) == 4


def test_too_many_points_is_refused() -> None:
    parsed = axes(batch_size="1,2,3,4,5", rps="1,2,3")
    with pytest.raises(UsageError, match="the sweep has 15 points \\(more than --max-points "
                                         "10\\); narrow an axis or raise --max-points"):
        build_plan(parsed, max_points=10)


@pytest.mark.parametrize(("given", "label"), [
    # only the axes that vary are named
    ({"batch_size": "5,25", "protocol": "v2-grpc"}, "batch 5"),
    ({"protocol": "v2-grpc,v2-rest", "compression": "gzip"}, "v2-grpc gzip"),
    ({"batch_size": "5,25", "protocol": "v2-rest,v2-grpc", "compression": "none,gzip"},
     "batch 5 + v2-rest"),
    # nothing varies: the full configuration
    ({"batch_size": "25", "protocol": "v2-grpc"}, "batch 25 + v2-grpc"),
    ({"server": {"max_batch_size": "16,32"}}, "max batch 16"),
])
def test_labels_name_what_varies(given: dict[str, Any], label: str) -> None:
    plan = build_plan(axes(**given))
    labels = {plan.label(p) for p in plan.points}
    assert label in labels, labels
    assert len(labels) == len(plan.points)
    assert all(plan.label(p, with_rate=True) == f"{plan.label(p)} @ 50 req/s"
               for p in plan.points)


def test_rate_text() -> None:
    assert rate_text(40.0, True) == "40 queries/s"
    assert rate_text(12.5, False) == "12.5 req/s"
    assert rate_text(None, False) == "auto"
