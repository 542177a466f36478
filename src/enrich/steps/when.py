"""``when:``: a step's condition on earlier steps' fields, parsed and judged without ``eval``.

The language is small on purpose::

    triage.category == "bug"
    triage.score != 0 and not triage.spam
    triage.sentiment in ["negative", "mixed"] or triage.urgent
    (triage.lang == "de" or triage.lang == "fr") and triage.topics != []

* a reference is ``step.field`` (a field of an earlier step's answer; ``step.completion`` is
  its text);
* literals are strings (``"..."`` or ``'...'``), integers and decimals, ``true``, ``false``,
  ``null`` and lists of literals (``[...]``);
* ``==``, ``!=``, ``in`` and ``not in`` compare; ``and``, ``or``, ``not`` and parentheses
  combine; a bare reference or literal is true when it is truthy (not null, false, 0, "" or
  an empty list).

:func:`parse_when` turns the text into a :class:`Condition` (or raises :class:`WhenError`,
one line saying where); :meth:`Condition.holds` judges it against one row's earlier fields.
Pure; nothing is ever evaluated as Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

__all__ = ["Condition", "WhenError", "parse_when"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>==|!=|\(|\)|\[|\]|,)
      | (?P<ref>[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


class WhenError(ValueError):
    """A ``when:`` that is not a condition; ``str()`` says what and where, in one line."""


@dataclass(frozen=True, slots=True)
class _Ref:
    step: str
    field: str


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class _Compare:
    op: str  # ==, !=, in, not in
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _Bool:
    op: str  # and, or
    operands: tuple[_Node, ...]


_Node = Union[_Ref, _Literal, _Compare, _Not, _Bool]  # noqa: UP007 (a runtime alias)

#: Where a reference's value comes from: ``(step, field) -> value`` for one row.
Lookup = Callable[[str, str], Any]


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed ``when:``: its text, the ``(step, field)`` pairs it reads, and its tree."""

    text: str
    refs: tuple[tuple[str, str], ...]
    _root: _Node

    def holds(self, lookup: Lookup) -> bool:
        """Whether the condition is true for the row whose fields ``lookup`` gives."""
        return _truthy(_value(self._root, lookup))


def parse_when(text: str) -> Condition:
    """Parse a ``when:`` condition (see the module doc).

    Raises:
        WhenError: not a condition, e.g. ``unexpected ')' at column 14``.
    """
    tokens = _tokenize(text)
    parser = _Parser(tokens, text)
    root = parser.expression()
    if parser.peek() is not None:
        raise WhenError(f"unexpected {parser.peek_text()} at column {parser.column()}")
    refs: list[tuple[str, str]] = []
    _collect(root, refs)
    return Condition(text, tuple(dict.fromkeys(refs)), root)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    at = 0
    while at < len(text):
        if not text[at:].strip():
            break
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            column = at + len(text[at:]) - len(text[at:].lstrip()) + 1
            raise WhenError(f"cannot read {text[column - 1 :][:12]!r} at column {column}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind), match.start(kind) + 1))
        at = match.end()
    if not tokens:
        raise WhenError("empty condition")
    return tokens


class _Parser:
    """Recursive descent: or > and > not > comparison > operand."""

    def __init__(self, tokens: list[tuple[str, str, int]], text: str) -> None:
        self._tokens = tokens
        self._at = 0
        self._text = text

    def peek(self) -> tuple[str, str, int] | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def peek_text(self) -> str:
        token = self.peek()
        return "the end" if token is None else repr(token[1])

    def column(self) -> int:
        token = self.peek()
        return len(self._text) + 1 if token is None else token[2]

    def _is(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token[0] in ("op", "word") and token[1] in words

    def _take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise WhenError("the condition ends too soon")
        self._at += 1
        return token

    def _expect(self, word: str) -> None:
        if not self._is(word):
            raise WhenError(f"expected {word!r}, got {self.peek_text()} at column {self.column()}")
        self._at += 1

    def expression(self) -> _Node:
        operands = [self._and()]
        while self._is("or"):
            self._at += 1
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else _Bool("or", tuple(operands))

    def _and(self) -> _Node:
        operands = [self._not()]
        while self._is("and"):
            self._at += 1
            operands.append(self._not())
        return operands[0] if len(operands) == 1 else _Bool("and", tuple(operands))

    def _not(self) -> _Node:
        if self._is("not"):
            self._at += 1
            return _Not(self._not())
        return self._comparison()

    def _comparison(self) -> _Node:
        left = self._operand()
        if self._is("==", "!="):
            op = self._take()[1]
            return _Compare(op, left, self._operand())
        if self._is("in"):
            self._at += 1
            return _Compare("in", left, self._operand())
        if self._is("not"):
            self._at += 1
            self._expect("in")
            return _Compare("not in", left, self._operand())
        return left

    def _operand(self) -> _Node:
        if self._is("("):
            self._at += 1
            inner = self.expression()
            self._expect(")")
            return inner
        if self._is("["):
            return _Literal(self._list())
        column = self.column()
        kind, text, _ = self._take()
        if kind == "ref":
            step, field = text.split(".")
            return _Ref(step, field)
        if kind == "string":
            return _Literal(_unquote(text))
        if kind == "number":
            return _Literal(float(text) if "." in text else int(text))
        if kind == "word" and text in _CONSTANTS:
            return _Literal(_CONSTANTS[text])
        if kind == "word" and text not in _KEYWORDS:
            raise WhenError(
                f"{text!r} at column {column}: write a field as step.field, "
                f'a string in quotes ("{text}")'
            )
        raise WhenError(f"unexpected {text!r} at column {column}")

    def _list(self) -> list[Any]:
        self._expect("[")
        values: list[Any] = []
        while not self._is("]"):
            column = self.column()
            item = self._operand()
            if not isinstance(item, _Literal):
                raise WhenError(f"a list holds literals only (column {column})")
            values.append(item.value)
            if not self._is("]"):
                self._expect(",")
        self._at += 1
        return values


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _collect(node: _Node, refs: list[tuple[str, str]]) -> None:
    if isinstance(node, _Ref):
        refs.append((node.step, node.field))
    elif isinstance(node, _Compare):
        _collect(node.left, refs)
        _collect(node.right, refs)
    elif isinstance(node, _Not):
        _collect(node.operand, refs)
    elif isinstance(node, _Bool):
        for operand in node.operands:
            _collect(operand, refs)


def _value(node: _Node, lookup: Lookup) -> Any:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Ref):
        return lookup(node.step, node.field)
    if isinstance(node, _Not):
        return not _truthy(_value(node.operand, lookup))
    if isinstance(node, _Bool):
        if node.op == "and":
            return all(_truthy(_value(o, lookup)) for o in node.operands)
        return any(_truthy(_value(o, lookup)) for o in node.operands)
    left, right = _value(node.left, lookup), _value(node.right, lookup)
    if node.op == "==":
        return _equal(left, right)
    if node.op == "!=":
        return not _equal(left, right)
    inside = isinstance(right, list | tuple) and any(_equal(left, v) for v in right)
    if isinstance(right, str) and isinstance(left, str):
        inside = left in right  # a substring of a text field
    return inside if node.op == "in" else not inside


def _equal(left: Any, right: Any) -> bool:
    # true is not 1 here: a boolean field compares to booleans only.
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return bool(left == right)


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [])
