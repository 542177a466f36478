"""One step's structured output: what its requests ask for, how an answer is judged, its columns.

An :class:`OutputSchema` is built once per job from a JSON Schema that passed the strict-mode
lint (:mod:`enrich.structured.lint`). It gives

* the request's ``response_format`` (:meth:`OutputSchema.response_format`): ``json_schema``,
  ``strict: true``, under a ``name`` that is part of the request, so it stays fixed (it is not
  the column prefix: renaming a column must not ask every row again);
* the judgement of one answer (:meth:`OutputSchema.parse`): JSON that does not parse, or does
  not validate against the schema, is a problem said in one line (``$.score: 'high' is not of
  type 'integer'``), never an exception; a valid answer becomes its parsed value;
* the typed columns (:meth:`OutputSchema.columns`, :meth:`OutputSchema.arrays`): one per
  top-level property, named ``<prefix>_<property>`` where the prefix is the step's name (for a
  one-prompt job, the completion column's), Arrow-typed by :mod:`enrich.structured.arrow`;
* what the manifest records (:meth:`OutputSchema.describe`).

Pure: no IO; the validator is compiled once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from enrich.structured.arrow import TypedField, typed_fields

__all__ = ["DEFAULT_SCHEMA_NAME", "OutputSchema", "ParsedOutput", "recorded_fields"]

#: ``json_schema.name`` of a one-prompt job's requests.
DEFAULT_SCHEMA_NAME = "output"
_MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class ParsedOutput:
    """An answer judged against the schema: its value when valid, else why not (one line)."""

    value: dict[str, Any] | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


class OutputSchema:
    """A step's output schema, ready to send, judge answers and fill typed columns."""

    def __init__(
        self, schema: Mapping[str, Any], *, prefix: str, name: str = DEFAULT_SCHEMA_NAME
    ) -> None:
        self.schema: dict[str, Any] = dict(schema)
        self.name = name
        self.prefix = prefix
        self.fields: list[TypedField] = typed_fields(schema)
        self._validator = Draft202012Validator(self.schema)

    def response_format(self) -> dict[str, Any]:
        """The ``response_format`` of every request of this step."""
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "strict": True, "schema": self.schema},
        }

    def columns(self) -> list[str]:
        """The typed output columns, in property order."""
        return [self.column(f.name) for f in self.fields]

    def column(self, field: str) -> str:
        return f"{self.prefix}_{field}"

    def parse(self, content: str) -> ParsedOutput:
        """Judge one finished answer: parse it as JSON and validate it against the schema."""
        if not content.strip():
            return ParsedOutput(None, "empty answer: no JSON")
        try:
            value = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            return ParsedOutput(None, _short(f"not JSON ({exc})"))
        error = best_match(self._validator.iter_errors(value))
        if error is not None:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
            reason = f"does not match the schema: ${where}: {error.message}"
            return ParsedOutput(None, _short(reason))
        if not isinstance(value, dict):  # a root that is not an object passed a lax schema
            return ParsedOutput(None, f"not a JSON object: {_short(content)}")
        return ParsedOutput(value)

    def values(self, content: str | None) -> dict[str, Any] | None:
        """The parsed value of an answer already judged valid (None if it is not an object)."""
        if not content:
            return None
        try:
            value = orjson.loads(content)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def arrays(self, contents: Sequence[str | None]) -> dict[str, pa.Array]:
        """Typed columns for rows whose valid answers are ``contents`` (None: no value)."""
        parsed = [self.values(c) for c in contents]
        return {
            self.column(f.name): f.array([None if p is None else p.get(f.name) for p in parsed])
            for f in self.fields
        }

    def describe(self) -> dict[str, Any]:
        """What the manifest records: the name, the JSON Schema and each column's Arrow type."""
        return {
            "name": self.name,
            "schema": self.schema,
            "columns": {self.column(f.name): str(f.type) for f in self.fields},
        }


def recorded_fields(description: Mapping[str, Any]) -> dict[str, TypedField]:
    """The typed columns a manifest's ``output_schema`` records (what :meth:`OutputSchema.
    describe` says, or ``{"steps": {step: that}}`` for a ``steps:`` job), by column name.

    Each column's field is typed again from the recorded JSON Schema; a column whose recorded
    Arrow type is not the one this code gives (a manifest from another version) is left out,
    so a reader keeps what it read rather than guess.
    """
    steps = description.get("steps")
    described = list(steps.values()) if isinstance(steps, Mapping) else [description]
    found: dict[str, TypedField] = {}
    for one in described:
        schema, columns = one.get("schema"), one.get("columns")
        if not isinstance(schema, Mapping) or not isinstance(columns, Mapping):
            continue
        fields = typed_fields(schema)
        if len(fields) != len(columns):
            continue
        for (column, recorded), f in zip(columns.items(), fields, strict=True):
            if recorded == str(f.type):
                found[str(column)] = f
    return found


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
