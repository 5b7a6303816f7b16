"""Grouping ops into transform and model: user rules, functions, default scopes and types."""

from __future__ import annotations

import pytest

from modelcaliper.errors import UsageError
from modelcaliper.profile.grouping import Grouper, GroupRule, parse_group_flags, split_name

DEFAULTS = Grouper()
USER = Grouper(parse_group_flags(["transform=features,prep/embed", "lookups=vocab"]))

GROUP_CASES = [
    # (grouper, name, op_type, function, traced, body_types, expected)
    # a Keras Normalization layer's op, behind TF's call wrapper and a uniquified scope
    (DEFAULTS, "StatefulPartitionedCall/prep_1/normalization_1/Sub", "Sub", None, True, (),
     "transform"),
    # a StringLookup layer's scope decides even for a generic op type
    (DEFAULTS, "string_lookup_2/Identity", "Identity", None, True, (), "transform"),
    # a lookup op outside any recognised scope is a transform by its type
    (DEFAULTS, "net/LookupTableFindV2", "LookupTableFindV2", None, True, (), "transform"),
    # string ops by type prefix
    (DEFAULTS, "clean/StringStrip", "StringStrip", None, True, (), "transform"),
    (DEFAULTS, "clean/StaticRegexReplace", "StaticRegexReplace", None, True, (), "transform"),
    # bucketize and hashing
    (DEFAULTS, "age/Bucketize", "Bucketize", None, True, (), "transform"),
    (DEFAULTS, "id/hash", "StringToHashBucketFast", None, True, (), "transform"),
    # an ONNX-ML feature operator
    (DEFAULTS, "scaler", "Scaler", None, True, (), "transform"),
    # a dense layer is model
    (DEFAULTS, "StatefulPartitionedCall/net_1/dense_1/MatMul", "MatMul", None, True, (), "model"),
    # a scope merely starting like a preprocessing layer is not one
    (DEFAULTS, "normalizationish/MatMul", "MatMul", None, True, (), "model"),
    # the function the op ran in beats its type: a MatMul of the transform signature ...
    (DEFAULTS, "strided_slice_1", "StridedSlice", "transform", True, (), "transform"),
    # ... and a lookup inside the model signature (an embedding's vocabulary)
    (DEFAULTS, "emb/LookupTableFindV2", "LookupTableFindV2", "model", True, (), "model"),
    # untraced executor time of the transform function
    (DEFAULTS, "transform/(untraced ops and executor)", "(untraced)", "transform", False, (),
     "transform"),
    # untraced time nobody can place keeps its own group
    (DEFAULTS, "serve/(untraced ops and executor)", "(untraced)", "serve", False, (), "untraced"),
    # an untraced loop whose body holds string ops is a transform
    (DEFAULTS, "features/map/while", "While (untraced body)", "serve", False,
     ("AsString", "StringLower", "TensorListGetItem"), "transform"),
    # an untraced numeric loop outside a transform scope belongs to the model (an RNN, say)
    (DEFAULTS, "features/map/while", "While (untraced body)", "serve", False,
     ("Abs", "Log1p", "Mul"), "model"),
    # an untraced loop under a transform scope
    (DEFAULTS, "transform/map/while", "While (untraced body)", "serve", False, ("Mul",),
     "transform"),
    # user rule: a prefix at any boundary, with TF's _1 suffix on the scope
    (USER, "StatefulPartitionedCall/features_1/map/while", "While (untraced body)", "serve",
     False, ("Mul",), "transform"),
    # user rule beats the function the op ran in
    (USER, "vocab/LookupTableFindV2", "LookupTableFindV2", "transform", True, (), "lookups"),
    # a multi-part user prefix: earlier parts exact (up to _n), the last a plain prefix
    (USER, "net/prep_3/embedding_lookup/Gather", "GatherV2", None, True, (), "transform"),
    # ... which does not match when an earlier part differs
    (USER, "net/prepare/embedding_lookup/Gather", "GatherV2", None, True, (), "model"),
]


@pytest.mark.parametrize(("grouper", "name", "op_type", "function", "traced", "body", "expected"),
                         GROUP_CASES)
def test_group_of(grouper: Grouper, name: str, op_type: str, function: str | None,
                  traced: bool, body: tuple[str, ...], expected: str) -> None:
    assert grouper.group_of(name, op_type, function, traced=traced, body_types=body) == expected


SPLIT_CASES = [
    # TF's call wrappers are dropped, other parts kept in order
    ("StatefulPartitionedCall/prep_1/normalization_1/Sub", ["prep_1", "normalization_1", "Sub"]),
    ("PartitionedCall_3/a/b", ["a", "b"]),
    # an ONNX node name without scopes
    ("wide_matmul", ["wide_matmul"]),
]


@pytest.mark.parametrize(("name", "parts"), SPLIT_CASES)
def test_split_name(name: str, parts: list[str]) -> None:
    assert split_name(name) == parts


BAD_FLAGS = [
    # no '='
    ("transform", "must look like"),
    # no prefixes
    ("transform=", "at least one name prefix"),
    # only separators
    ("transform=,/,", "at least one name prefix"),
    # a group name with spaces
    ("my group=a", "--group name"),
]


@pytest.mark.parametrize(("flag", "message"), BAD_FLAGS)
def test_bad_group_flags(flag: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_group_flags([flag])


def test_rules_keep_order_and_describe_themselves() -> None:
    rules = parse_group_flags(["a=x", "b=x,y/"])
    assert [r.group for r in rules] == ["a", "b"]
    assert Grouper(rules).describe() == ["a=x", "b=x,y"]
    assert Grouper(rules).group_of("x/op", "MatMul") == "a"  # first matching rule wins


def test_full_name_prefix_matches() -> None:
    rule = GroupRule("transform", ("StatefulPartitionedCall/prep",))
    assert rule.matches("StatefulPartitionedCall/prep_1/Sub")
    assert not rule.matches("StatefulPartitionedCall/net/Sub")
