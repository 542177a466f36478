"""The short field list of an output schema, turned into the JSON Schema it stands for.

A job may describe its structured output as a mapping of field names to short types instead of
a JSON Schema::

    sentiment: enum[positive, negative, mixed]
    score: int
    ratio: float
    ok: bool
    topics: list[str]
    summary: str
    note: str?                      # may be null (still present: strict mode requires it)
    address: {street: str, zip: str}
    items: [{name: str, qty: int}]  # a one-element list: a list of that type

:func:`field_list_schema` turns it into a JSON Schema that strict mode accepts as it is: every
object lists all its properties in ``required`` and sets ``additionalProperties: false``, a
``?`` type is ``anyOf`` the type and ``null``. :func:`is_json_schema` tells the two spellings
apart. Both are pure; a bad entry is a :class:`FieldListError` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["FieldListError", "field_list_schema", "is_json_schema"]

_SCALARS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "string": {"type": "string"},
    "int": {"type": "integer"},
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "number": {"type": "number"},
    "bool": {"type": "boolean"},
    "boolean": {"type": "boolean"},
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WRAPPED = re.compile(r"^(enum|list)\s*\[(.*)\]$", re.DOTALL)
# Keys only a JSON Schema has at its top: a field list cannot be mistaken for one.
_SCHEMA_KEYS = frozenset({"$schema", "$defs", "$ref", "anyOf", "properties"})
_TYPES_HELP = "str, int, float, bool, enum[a, b], list[T], T? or a nested mapping"


class FieldListError(ValueError):
    """A field list entry that does not say a type; ``str()`` names the field."""


def is_json_schema(value: Mapping[str, Any]) -> bool:
    """Whether ``value`` is a JSON Schema (``type: object``, ``properties``...), not a field list.

    A field list maps names to type strings or mappings, so a ``type`` whose value is
    ``object`` or a keyword such as ``properties`` at the top marks a JSON Schema.
    """
    return value.get("type") == "object" or bool(_SCHEMA_KEYS & value.keys())


def field_list_schema(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema (an object, strict-mode ready) of a field list.

    Raises:
        FieldListError: ``"<field>: <what is wrong>"`` for the first bad entry.
    """
    return _object(fields, "")


def _object(fields: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if not fields:
        raise FieldListError(f"{prefix.rstrip('.') or '(top level)'}: no fields")
    properties: dict[str, Any] = {}
    for name, spec in fields.items():
        where = f"{prefix}{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise FieldListError(
                f"{where}: a field name is letters, digits and '_' (not starting with a digit)"
            )
        properties[name] = _type(spec, where)
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _type(spec: Any, where: str) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        return _object(spec, f"{where}.")
    if isinstance(spec, list):
        if len(spec) != 1:
            raise FieldListError(f"{where}: a list type is one element, e.g. [{{name: str}}]")
        return {"type": "array", "items": _type(spec[0], f"{where}[]")}
    if not isinstance(spec, str) or not spec.strip():
        raise FieldListError(f"{where}: {spec!r} is not a type ({_TYPES_HELP})")
    text = spec.strip()
    if text.endswith("?"):
        return {"anyOf": [_type(text[:-1], where), {"type": "null"}]}
    scalar = _SCALARS.get(text.lower())
    if scalar is not None:
        return dict(scalar)
    wrapped = _WRAPPED.match(text)
    if wrapped is None:
        raise FieldListError(f"{where}: unknown type {text!r} ({_TYPES_HELP})")
    kind, inner = wrapped.group(1), wrapped.group(2)
    if kind == "list":
        return {"type": "array", "items": _type(inner, f"{where}[]")}
    values = [v.strip().strip("'\"").strip() for v in inner.split(",")]
    if not all(values):
        raise FieldListError(f"{where}: {text!r} has an empty value; list them: enum[a, b]")
    duplicate = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if duplicate is not None:
        raise FieldListError(f"{where}: {text!r} lists {duplicate!r} twice")
    return {"type": "string", "enum": values}
