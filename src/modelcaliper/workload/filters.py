"""``--where`` filters: a small, safe expression language compiled to a pyarrow expression.

The text is tokenised and parsed by hand, never evaluated as Python. What it accepts::

    condition  := disjunct ("or" disjunct)*
    disjunct   := term ("and" term)*
    term       := "not" term | "(" condition ")" | comparison
    comparison := value (op value | "is" ["not"] "null" | ["not"] "in" list)?
    op         := == | = | != | <> | < | <= | > | >=
    value      := column | number | 'string' | "string" | true | false
    list       := [ value, ... ]   or   ( value, ... )
    column     := name made of letters, digits and _   or   `any name in backquotes`

Keywords are case-insensitive. A lone column must be boolean. Columns are checked against
the dataset's schema and each comparison's types against each other (a string column against
a number is refused), so a typo fails before a single row is read, with a one-line
``DataError``. Rows where a compared value is null do not match (SQL semantics).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from modelcaliper.errors import DataError

__all__ = ["Filter", "parse_where"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<quoted>`[^`]+`)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<>|<=|>=|=|<|>|\(|\)|\[|\]|,|-)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
_COMPARISONS = {"==": "==", "=": "==", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=",
                ">": ">", ">=": ">="}
_MAX_LENGTH = 10_000
_MAX_DEPTH = 64


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, column, keyword, op, end
    text: str
    value: Any
    at: int


@dataclass(frozen=True)
class Filter:
    """A parsed ``--where`` filter: its text, pyarrow expression and the columns it reads."""

    text: str
    expression: ds.Expression
    columns: tuple[str, ...]


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            at = len(text) - len(text[pos:].lstrip())
            raise _error(text, f"unexpected character {text[at]!r} at position {at}")
        kind = match.lastgroup or ""
        raw = match.group(kind)
        at = match.start(kind)
        if kind == "number":
            value: Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
        elif kind == "string":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "quoted":
            kind, value = "column", raw[1:-1]
        elif kind == "name" and raw.lower() in _KEYWORDS:
            kind, value = "keyword", raw.lower()
        elif kind == "name":
            kind, value = "column", raw
        else:
            value = raw
        out.append(_Token(kind, raw, value, at))
        pos = match.end()
    out.append(_Token("end", "", None, len(text)))
    return out


def _error(text: str, what: str) -> DataError:
    return DataError(f"--where {text!r}: {what}")


@dataclass(frozen=True)
class _Value:
    """An operand: a column (name and Arrow type) or a constant."""

    expression: Any
    column: str | None
    type: pa.DataType | None
    constant: Any = None


class _Parser:
    def __init__(self, text: str, schema: pa.Schema) -> None:
        self.text = text
        self.schema = schema
        self.tokens = _tokens(text)
        self.index = 0
        self.columns: list[str] = []
        self.depth = 0

    # -- token helpers
    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "keyword" and token.value == word:
            self.index += 1
            return True
        return False

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise self.unexpected(token, f"expected '{text}'")

    def unexpected(self, token: _Token, hint: str = "") -> DataError:
        what = "end" if token.kind == "end" else repr(token.text)
        return _error(self.text, f"unexpected {what} at position {token.at}"
                      + (f"; {hint}" if hint else ""))

    # -- grammar
    def parse(self) -> ds.Expression:
        expression = self.condition()
        if self.peek().kind != "end":
            raise self.unexpected(self.peek(), "join conditions with 'and' / 'or'")
        return expression

    def condition(self) -> ds.Expression:
        expression = self.disjunct()
        while self.keyword("or"):
            expression = expression | self.disjunct()
        return expression

    def disjunct(self) -> ds.Expression:
        expression = self.term()
        while self.keyword("and"):
            expression = expression & self.term()
        return expression

    def term(self) -> ds.Expression:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _error(self.text, f"nests deeper than {_MAX_DEPTH} levels")
        try:
            if self.keyword("not"):
                return ~self.term()
            if self.peek().text == "(":
                self.take()
                expression = self.condition()
                self.expect(")")
                return expression
            return self.comparison()
        finally:
            self.depth -= 1

    def comparison(self) -> ds.Expression:
        left = self.value()
        token = self.peek()
        if token.kind == "op" and token.text in _COMPARISONS:
            self.take()
            right = self.value()
            return self.compare(left, _COMPARISONS[token.text], right)
        if self.keyword("is"):
            negate = self.keyword("not")
            if not self.keyword("null"):
                raise self.unexpected(self.peek(), "write 'is null' or 'is not null'")
            self.need_column(left, "is null")
            test = left.expression.is_null()
            return ~test if negate else test
        negate = False
        if token.kind == "keyword" and token.value == "not" and self.peek(1).value == "in":
            self.take()
            negate = True
        if self.keyword("in"):
            test = self.member(left)
            # A null is in no list and, as in SQL, not outside one either.
            return (~test & left.expression.is_valid()) if negate else test
        if left.column is not None and pa.types.is_boolean(left.type):
            return left.expression
        if left.column is None and isinstance(left.constant, bool):
            return ds.scalar(left.constant)
        if left.column is None:
            raise _error(self.text, f"the constant {left.constant!r} is not a condition; "
                                    "compare a column with it")
        raise _error(self.text, f"column '{left.column}' ({left.type}) is not a condition; "
                                f"compare it, e.g. {left.column} > 0")

    def value(self) -> _Value:
        token = self.take()
        if token.kind == "op" and token.text == "-":
            number = self.take()
            if number.kind != "number":
                raise self.unexpected(number, "'-' must come before a number")
            return _Value(ds.scalar(-number.value), None, None, -number.value)
        if token.kind in ("number", "string"):
            return _Value(ds.scalar(token.value), None, None, token.value)
        if token.kind == "keyword" and token.value in ("true", "false"):
            return _Value(ds.scalar(token.value == "true"), None, None, token.value == "true")
        if token.kind == "keyword" and token.value == "null":
            raise _error(self.text, "compare with null using 'is null' or 'is not null'")
        if token.kind == "column":
            if self.peek().text == "(":
                raise _error(self.text, f"'{token.value}(' looks like a function call; "
                                        "filters allow only columns, constants and comparisons")
            return self.column(token.value)
        raise self.unexpected(token, "expected a column or a constant")

    def column(self, name: str) -> _Value:
        if name not in self.schema.names:
            close = difflib.get_close_matches(name, self.schema.names, n=3)
            hint = (f"close names: {', '.join(close)}" if close
                    else f"the data has {len(self.schema.names)} columns, e.g. "
                    f"{', '.join(self.schema.names[:5])}")
            raise _error(self.text, f"the data has no column '{name}'; {hint}")
        kind = self.schema.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_nested(kind):
            raise _error(self.text, f"column '{name}' holds {kind}; filters work on plain "
                                    "(scalar) columns only")
        if name not in self.columns:
            self.columns.append(name)
        return _Value(ds.field(name), name, kind)

    def need_column(self, value: _Value, what: str) -> None:
        if value.column is None:
            raise _error(self.text, f"'{what}' needs a column on its left, got {value.constant!r}")

    def compare(self, left: _Value, op: str, right: _Value) -> ds.Expression:
        if left.column is None and right.column is None:
            raise _error(self.text, f"{left.constant!r} {op} {right.constant!r} compares two "
                                    "constants; name a column")
        if left.column is None:
            left, right = right, left
            op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
        rhs = self.operand_for(left, right)
        lhs = left.expression
        if op == "==":
            return lhs == rhs
        if op == "!=":
            return lhs != rhs
        if op == "<":
            return lhs < rhs
        if op == "<=":
            return lhs <= rhs
        if op == ">":
            return lhs > rhs
        return lhs >= rhs

    def operand_for(self, column: _Value, other: _Value) -> Any:
        """``other`` as something comparable with ``column``, or a DataError naming both."""
        if other.column is not None:
            assert column.type is not None and other.type is not None
            if _family(other.type) != _family(column.type):
                raise _error(self.text, f"column '{column.column}' ({column.type}) cannot be "
                                        f"compared with column '{other.column}' ({other.type})")
            return other.expression
        return ds.scalar(self.literal_for(column, other.constant))

    def literal_for(self, column: _Value, constant: Any) -> Any:
        """``constant`` as a value of ``column``'s kind, or a DataError naming both."""
        assert column.type is not None
        want = _family(column.type)
        got = ("bool" if isinstance(constant, bool) else
               "number" if isinstance(constant, (int, float)) else "string")
        if want == "binary" and got == "string":
            return constant.encode("utf-8")
        if want == "temporal" and got == "string":
            try:
                return pa.scalar(constant).cast(column.type).as_py()
            except (pa.ArrowException, ValueError):
                raise _error(self.text, f"{constant!r} is not a {column.type} value for column "
                                        f"'{column.column}'") from None
        if got != want:
            raise _error(self.text, f"column '{column.column}' holds {column.type} values and "
                                    f"cannot be compared with the {got} {constant!r}")
        return constant

    def member_value(self, column: _Value, constant: Any) -> Any:
        """One value of an 'in' list, which must be exactly representable in the column."""
        value = self.literal_for(column, constant)
        assert column.type is not None
        if pa.types.is_integer(column.type) and isinstance(value, float):
            if not value.is_integer():
                raise _error(self.text, f"{value!r} can never equal a value of the integer "
                                        f"column '{column.column}'")
            value = int(value)
        return value

    def member(self, left: _Value) -> ds.Expression:
        self.need_column(left, "in")
        opener = self.take()
        closer = {"[": "]", "(": ")"}.get(opener.text)
        if closer is None:
            raise self.unexpected(opener, "write the values as [a, b, ...]")
        values: list[Any] = []
        while self.peek().text != closer:
            item = self.value()
            if item.column is not None:
                raise _error(self.text, f"'in' lists hold constants, not column '{item.column}'")
            values.append(self.member_value(left, item.constant))
            if self.peek().text == ",":
                self.take()
            elif self.peek().text != closer:
                raise self.unexpected(self.peek(), f"separate values with ',' and end with "
                                                   f"'{closer}'")
        self.take()
        if not values:
            raise _error(self.text, "an 'in' list needs at least one value")
        try:
            value_set = pa.array(values, type=left.type)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            raise _error(self.text, f"the 'in' values do not fit column '{left.column}' "
                                    f"({left.type})") from None
        return left.expression.isin(value_set)


def _family(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary"
    if pa.types.is_temporal(kind):
        return "temporal"
    return str(kind)


def parse_where(text: str, schema: pa.Schema) -> Filter:
    """Parse ``text`` (see the module docstring) against ``schema`` into a ``Filter``."""
    if not text or not text.strip():
        raise DataError("--where is empty; give a condition such as \"price > 10\"")
    if len(text) > _MAX_LENGTH:
        raise DataError(f"--where is {len(text)} characters long; the limit is {_MAX_LENGTH}")
    parser = _Parser(text, schema)
    expression = parser.parse()
    return Filter(text, expression, tuple(parser.columns))
