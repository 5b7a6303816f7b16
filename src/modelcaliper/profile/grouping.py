"""Which group an operation belongs to: the model's feature ``transform`` or the ``model`` proper.

An op is placed by the first of these that decides:

1. **user rules** (``--group transform=prep,features/``): a rule's prefixes are matched at
   every ``/`` boundary of the op's name, so ``prep`` matches ``prep_1/normalization/Sub``
   and ``StatefulPartitionedCall/prep/Cast`` alike. A rule's last path part is a plain string
   prefix (``string_`` matches ``string_lookup_1``); earlier parts must equal a scope, up to
   the ``_<n>`` suffix TensorFlow adds to repeated scope names. Rules are tried in order.
2. **the function it ran in**: ops of a ``transform`` (or ``preprocess``) signature are
   ``transform``, ops of a ``model`` signature are ``model`` (the split the embedded server
   times, see ``modelcaliper.server.runtimes.tensorflow``).
3. **default scope names**: a scope named after a Keras preprocessing layer
   (``normalization``, ``string_lookup``, ``hashing``, ``discretization``, ...) or called
   ``transform``/``preprocessing``, with or without a ``_<n>`` suffix.
4. **default op types**: lookups, hashing, string ops, bucketize, example parsing, and the
   ONNX-ML feature operators (``LabelEncoder``, ``Scaler``, ...).
5. Untraced loop rows (time TensorFlow spent in a loop without timing its ops) go to
   ``transform`` when the loop body holds a transform-type op.

Everything else is ``model``, except untraced time that none of the above places, which
keeps its own group, ``untraced``: it is reported, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from modelcaliper.errors import UsageError

__all__ = [
    "DEFAULT_GROUPS",
    "GroupRule",
    "Grouper",
    "MODEL",
    "TRANSFORM",
    "UNTRACED",
    "parse_group_flags",
    "split_name",
]

TRANSFORM = "transform"
MODEL = "model"
UNTRACED = "untraced"
DEFAULT_GROUPS = (TRANSFORM, MODEL)

_CALL_WRAPPER = re.compile(r"(Stateful)?PartitionedCall(_\d+)?")
_SUFFIX = r"(_\d+)*"

TRANSFORM_FUNCTIONS = frozenset({"transform", "preprocess", "preprocessing", "transform_features"})
MODEL_FUNCTIONS = frozenset({"model"})

TRANSFORM_SCOPES = (
    "normalization", "string_lookup", "integer_lookup", "hashing", "hashed_crossing",
    "discretization", "category_encoding", "text_vectorization", "rescaling", "resizing",
    "center_crop", "feature_space", "transform", "preprocessing", "preprocess",
)
_TRANSFORM_SCOPE = re.compile(rf"({'|'.join(TRANSFORM_SCOPES)}){_SUFFIX}")

TRANSFORM_OP_TYPES = frozenset({
    # lookups and tables
    "LookupTableFind", "LookupTableFindV2", "LookupTableSize", "LookupTableSizeV2",
    "LookupTableImport", "LookupTableImportV2", "LookupTableExport", "LookupTableExportV2",
    "HashTable", "HashTableV2", "MutableHashTable", "MutableHashTableV2",
    "MutableDenseHashTableV2", "InitializeTable", "InitializeTableV2",
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2",
    # hashing, bucketizing, crossing
    "StringToHashBucket", "StringToHashBucketFast", "StringToHashBucketStrong", "Fingerprint",
    "Bucketize", "SparseCross", "SparseCrossHashed", "SparseCrossV2",
    # strings and parsing
    "AsString", "Substr", "ReduceJoin", "DecodeCSV", "DecodeRaw", "DecodeBase64", "EncodeBase64",
    "ParseExample", "ParseExampleV2", "ParseSingleExample", "ParseSequenceExample",
    "ParseSequenceExampleV2",
    # ONNX-ML feature operators and ONNX string operators
    "LabelEncoder", "CategoryMapper", "StringNormalizer", "Tokenizer", "OneHotEncoder",
    "Normalizer", "Scaler", "Binarizer", "Imputer", "DictVectorizer", "FeatureVectorizer",
    "RegexFullMatch", "StringConcat", "StringSplit",
})
TRANSFORM_OP_PREFIXES = ("String", "Regex", "StaticRegex", "Unicode")


def split_name(name: str) -> list[str]:
    """The parts of an op name, without the function-call wrappers TensorFlow prefixes."""
    return [part for part in name.split("/") if part and not _CALL_WRAPPER.fullmatch(part)]


def is_transform_type(op_type: str) -> bool:
    """Whether ``op_type`` is one of the default transform-style operation types."""
    return op_type in TRANSFORM_OP_TYPES or op_type.startswith(TRANSFORM_OP_PREFIXES)


@dataclass(frozen=True)
class GroupRule:
    """Ops whose name matches one of ``prefixes`` belong to ``group``."""

    group: str
    prefixes: tuple[str, ...]
    _patterns: tuple[tuple[re.Pattern[str], ...], ...] = field(
        default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        group = self.group.strip()
        prefixes = tuple(p.strip().strip("/") for p in self.prefixes if p.strip().strip("/"))
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", group):
            raise UsageError(f"--group name must be letters, digits, '_', '.' or '-', "
                             f"got {self.group!r}")
        if not prefixes:
            raise UsageError(f"--group {group}= needs at least one name prefix, like "
                             f"{group}=prep,features")
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "prefixes", prefixes)
        object.__setattr__(self, "_patterns", tuple(_pattern(p) for p in prefixes))

    def matches(self, name: str) -> bool:
        """Whether ``name`` (an op or scope name) starts, at some ``/`` boundary, with a prefix."""
        parts = split_name(name)
        full = name.strip("/")
        for prefix, pattern in zip(self.prefixes, self._patterns, strict=True):
            if full.startswith(prefix):
                return True
            if _matches_at_boundary(parts, pattern):
                return True
        return False

    def describe(self) -> str:
        """The rule as the flag that makes it: ``transform=prep,features``."""
        return f"{self.group}={','.join(self.prefixes)}"


def _pattern(prefix: str) -> tuple[re.Pattern[str], ...]:
    parts = [p for p in prefix.split("/") if p]
    exact = [re.compile(rf"{re.escape(p)}{_SUFFIX}") for p in parts[:-1]]
    return (*exact, re.compile(rf"{re.escape(parts[-1])}.*"))


def _matches_at_boundary(parts: Sequence[str], pattern: tuple[re.Pattern[str], ...]) -> bool:
    width = len(pattern)
    for start in range(len(parts) - width + 1):
        if all(p.fullmatch(parts[start + i]) for i, p in enumerate(pattern)):
            return True
    return False


def parse_group_flags(values: Iterable[str] | None) -> tuple[GroupRule, ...]:
    """``--group`` values (``name=prefix1,prefix2``) as rules, in the order given."""
    rules = []
    for value in values or ():
        group, sep, prefixes = value.partition("=")
        if not sep:
            raise UsageError(f"--group must look like transform=prefix1,prefix2, got {value!r}")
        rules.append(GroupRule(group, tuple(prefixes.split(","))))
    return tuple(rules)


class Grouper:
    """Assigns groups to ops: user rules first, then the defaults of the module docstring."""

    def __init__(self, rules: Sequence[GroupRule] = ()) -> None:
        self.rules = tuple(rules)

    def group_of(self, name: str, op_type: str, function: str | None = None, *,
                 traced: bool = True, body_types: Sequence[str] = ()) -> str:
        """The group of one op (or untraced row) given its name, type and function."""
        for rule in self.rules:
            if rule.matches(name):
                return rule.group
        if function in TRANSFORM_FUNCTIONS:
            return TRANSFORM
        if function in MODEL_FUNCTIONS:
            return MODEL
        if any(_TRANSFORM_SCOPE.fullmatch(part) for part in split_name(name)):
            return TRANSFORM
        if traced:
            return TRANSFORM if is_transform_type(op_type) else MODEL
        if any(is_transform_type(t) for t in body_types):
            return TRANSFORM
        return MODEL if body_types else UNTRACED

    def describe(self) -> list[str]:
        """The user rules as flags, for the stored profile."""
        return [rule.describe() for rule in self.rules]
