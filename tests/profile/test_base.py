"""The profile format: self times by nesting, shares, summaries, the stored document."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.errors import DataError
from modelcaliper.profile.base import (
    FORMAT,
    MissingProfile,
    OpStat,
    ProfileResult,
    finish_result,
    merge_rows,
    nest_spans,
    read_profile,
    write_profile,
)
from modelcaliper.profile.grouping import Grouper, parse_group_flags

NEST_CASES = [
    # (spans as (start, duration), self times, parents)
    # one span alone keeps its duration
    ([(0, 10)], [10], [-1]),
    # two children inside a parent: the parent keeps the gaps
    ([(0, 10), (1, 3), (5, 4)], [3, 3, 4], [-1, 0, 0]),
    # a grandchild is taken from its parent only, not from the grandparent
    ([(0, 10), (1, 6), (2, 2)], [4, 4, 2], [-1, 0, 1]),
    # spans one after the other do not nest
    ([(0, 2), (2, 3), (6, 1)], [2, 3, 1], [-1, -1, -1]),
    # a child sticking out of its parent (clock jitter) cannot make self time negative
    ([(0, 2), (1, 5)], [0, 5], [-1, 0]),
]


@pytest.mark.parametrize(("spans", "own", "parents"), NEST_CASES)
def test_nest_spans(spans: list[tuple[float, float]], own: list[float],
                    parents: list[int]) -> None:
    assert nest_spans(spans) == (own, parents)


def _op(name: str, self_us: float, op_type: str = "MatMul", **kwargs: object) -> OpStat:
    return OpStat(name=name, op_type=op_type, calls=2, total_us=self_us, self_us=self_us,
                  **kwargs)  # type: ignore[arg-type]


def test_finish_result_groups_shares_and_sorts() -> None:
    raw = ProfileResult("tensorflow", (
        _op("net/dense/MatMul", 30.0),
        _op("prep/normalization/Sub", 50.0, "Sub"),
        _op("serve/(untraced ops and executor)", 20.0, "(untraced)", traced=False,
            function="serve"),
    ))
    result = finish_result(raw, Grouper())
    assert [op.name for op in result.ops] == ["prep/normalization/Sub", "net/dense/MatMul",
                                              "serve/(untraced ops and executor)"]
    assert [op.group for op in result.ops] == ["transform", "model", "untraced"]
    assert [op.share for op in result.ops] == pytest.approx([0.5, 0.3, 0.2])
    summary = result.summary(top_n=2)
    assert summary.top_group == "transform"
    assert [(g.group, g.self_us, g.ops) for g in summary.groups] == [
        ("transform", 50.0, 1), ("model", 30.0, 1), ("untraced", 20.0, 1)]
    assert summary.share_of("model") == pytest.approx(0.3)
    assert summary.share_of("absent") == 0.0
    assert [op.name for op in summary.top] == ["prep/normalization/Sub", "net/dense/MatMul"]


def test_regrouped_applies_user_rules() -> None:
    result = finish_result(ProfileResult("onnxruntime", (_op("features/scale", 5.0),
                                                         _op("head", 5.0))), Grouper())
    assert result.op("features/scale").group == "model"  # type: ignore[union-attr]
    again = result.regrouped(Grouper(parse_group_flags(["transform=features"])))
    assert again.op("features/scale").group == "transform"  # type: ignore[union-attr]
    assert again.rules == ("transform=features",)


def test_merge_rows_sums_and_keeps_distinct_shapes() -> None:
    rows = [_op("a", 1.0, input_shapes=("float[5]",), function="f"),
            _op("a", 2.0, input_shapes=("float[25]",), function="g"),
            _op("a", 3.0, input_shapes=("float[5]",), function="f"),
            _op("b", 4.0)]
    merged = {row.name: row for row in merge_rows(rows)}
    assert merged["a"].calls == 6 and merged["a"].self_us == 6.0
    assert merged["a"].input_shapes == ("float[5]", "float[25]")
    assert merged["a"].function is None  # ran in two functions
    assert merged["b"].self_us == 4.0


def test_empty_profile_summary() -> None:
    summary = ProfileResult("onnxruntime", ()).summary()
    assert summary.total_us == 0 and summary.groups == () and summary.top_group is None


names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=30)
rows = st.builds(
    OpStat, name=names, op_type=names, calls=st.integers(1, 10_000),
    total_us=st.floats(0, 1e7), self_us=st.floats(0, 1e7), function=st.none() | names,
    input_shapes=st.lists(names, max_size=3).map(tuple), traced=st.booleans(),
    body_types=st.lists(names, max_size=3).map(tuple),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, max_size=12))
def test_shares_add_up_and_document_round_trips(ops: list[OpStat]) -> None:
    result = finish_result(ProfileResult("tensorflow", tuple(ops), batch_size=5, predictions=3,
                                         wall_us=10.0), Grouper())
    if result.total_us > 0:
        assert sum(op.share for op in result.ops) == pytest.approx(1.0)
        assert sum(g.share for g in result.summary().groups) == pytest.approx(1.0)
    selfs = [op.self_us for op in result.ops]
    assert selfs == sorted(selfs, reverse=True)
    document = orjson.loads(orjson.dumps(result.to_dict()))
    back = ProfileResult.from_dict(document)
    assert [(o.name, o.op_type, o.group, o.calls, o.traced, o.function, o.input_shapes,
             o.body_types) for o in back.ops] == \
        [(o.name, o.op_type, o.group, o.calls, o.traced, o.function, o.input_shapes,
          o.body_types) for o in result.ops]
    assert [o.self_us for o in back.ops] == pytest.approx([round(s, 3) for s in selfs])


def test_write_and_read_profile(tmp_path: Path) -> None:
    result = finish_result(ProfileResult("onnxruntime", (_op("a", 3.0), _op("b", 1.0)),
                                         label="batch 5", batch_size=5, predictions=2,
                                         overhead_ratio=1.2), Grouper())
    path = write_profile(result, tmp_path)
    assert path == tmp_path / "profile.json"
    document = orjson.loads(path.read_bytes())
    assert document["format"] == FORMAT and document["summary"]["top"] == ["a", "b"]
    back = read_profile(tmp_path)
    assert isinstance(back, ProfileResult)
    assert back.overhead_ratio == 1.2 and back.op("a").share == pytest.approx(0.75)  # type: ignore[union-attr]
    write_profile(MissingProfile("no profiler service at h:1"), tmp_path / "missing")
    missing = read_profile(tmp_path / "missing" / "profile.json")
    assert missing == MissingProfile("no profiler service at h:1")


BAD_DOCUMENTS = [
    # another format
    ({"format": "something/1", "status": "ok"}, "not a modelcaliper.profile/1"),
    # not a mapping at all
    ([1, 2], "not a modelcaliper.profile/1"),
    # a row without a name
    ({"format": FORMAT, "status": "ok", "runtime": "tensorflow",
      "ops": [{"op_type": "MatMul", "calls": 1, "total_us": 1, "self_us": 1}]}, "malformed"),
]


@pytest.mark.parametrize(("document", "message"), BAD_DOCUMENTS)
def test_from_dict_rejects(document: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        ProfileResult.from_dict(document)  # type: ignore[arg-type]


def test_read_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no profile at"):
        read_profile(tmp_path / "absent.json")
    (tmp_path / "profile.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_profile(tmp_path)
