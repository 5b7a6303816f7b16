"""Query planning: K candidates per query, groups never mixed, seeded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.errors import DataError
from modelcaliper.workload.queries import plan_queries


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=30), k=st.integers(1, 8),
       seed=st.integers(0, 2**32), policy=st.sampled_from(["skip", "repeat"]))
def test_queries_come_from_one_group_and_have_k_rows(sizes, k, seed, policy):
    groups = np.repeat(np.arange(len(sizes)), sizes)
    if policy == "skip" and max(sizes) < k:
        with pytest.raises(DataError, match=f"larger than every group .* has {max(sizes)} rows"):
            plan_queries(groups.size, k, groups=groups, seed=seed, small_groups=policy)
        return
    plan = plan_queries(groups.size, k, groups=groups, seed=seed, small_groups=policy)
    again = plan_queries(groups.size, k, groups=groups, seed=seed, small_groups=policy)
    assert [q.tolist() for q in plan.queries] == [q.tolist() for q in again.queries]  # seeded
    for query in plan.queries:
        assert query.size == k  # exactly K candidates
        assert len(set(groups[query].tolist())) == 1  # never two groups in one query
        assert query.tolist() == sorted(query.tolist())  # data order inside a query
    # one query per group that can make one
    expected = sum(1 for s in sizes if s >= k or policy == "repeat")
    assert len(plan.queries) == expected
    if policy == "skip":
        assert all(len(set(q.tolist())) == k for q in plan.queries)  # no repeated rows


@pytest.mark.parametrize(
    ("rows", "k", "queries", "unused"),
    [
        (10, 5, 2, 0),  # an exact fit
        (12, 5, 2, 2),  # leftovers are not used
        (5, 5, 1, 0),  # a single query
    ],
)
def test_without_groups_rows_are_shuffled_into_queries(rows, k, queries, unused):
    plan = plan_queries(rows, k, seed=3)
    assert len(plan.queries) == queries and plan.unused_rows == unused
    used = plan.order()
    assert len(set(used.tolist())) == used.size  # no row twice
    assert plan.query_ids().tolist() == np.repeat(np.arange(queries), k).tolist()


def test_too_few_rows_for_one_query():
    with pytest.raises(DataError, match="query_size 8 needs at least 8 rows; the selection has 3"):
        plan_queries(3, 8)


def test_large_groups_are_subsampled_and_counted():
    groups = np.array([0] * 10 + [1] * 3 + [2] * 4)
    plan = plan_queries(groups.size, 4, groups=groups, group_column="q")
    assert plan.subsampled_groups == 1 and plan.skipped_groups == 1
    assert plan.unused_rows == 6 + 3
