"""Arrow types from an output schema: one typed column per top-level property.

:func:`typed_fields` maps each property of an object schema to a :class:`TypedField`:

=====================================  =============================================
JSON Schema                            Arrow
=====================================  =============================================
``type: string`` (any ``format``)      ``string``
``enum`` of strings                    ``dictionary<int32, string>`` (the enum's values)
``type: integer``                      ``int64``
``type: number``                       ``double``
``type: boolean``                      ``bool``
``type: array`` with ``items``         ``list<item>``
``type: object`` with ``properties``   ``struct<...>``, fields in property order
``anyOf`` with ``{type: null}``        the other branch's type, nullable
``$ref``                               the type of what it points to
anything else (mixed ``anyOf``,        ``string`` holding the value's JSON text
free-form objects, recursion)
=====================================  =============================================

A nested field or list item is nullable only where the schema allows ``null``; every top-level
column is nullable, since an error row has no value. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["ENUM_TYPE", "TypedField", "typed_fields"]

#: The Arrow type of a string enum: dictionary-encoded, so a label costs 4 bytes a row.
ENUM_TYPE = pa.dictionary(pa.int32(), pa.string())
_MAX_DEPTH = 32
_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "null": pa.null(),
}

Convert = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class TypedField:
    """One property as a column: its Arrow type, whether null is allowed, how values convert.

    ``convert`` is None when a parsed JSON value goes into Arrow as it is; ``enum`` holds a
    top-level enum's values, the dictionary of its column in schema order.
    """

    name: str
    type: pa.DataType
    nullable: bool
    convert: Convert | None = None
    enum: tuple[str, ...] | None = None

    def array(self, values: Sequence[Any]) -> pa.Array:
        """The column of ``values`` (parsed JSON, None for a row without output)."""
        if self.convert is not None:
            convert = self.convert
            values = [None if v is None else convert(v) for v in values]
        if self.enum is not None:
            index = {v: i for i, v in enumerate(self.enum)}
            indices = pa.array([index.get(v) for v in values], pa.int32())
            return pa.DictionaryArray.from_arrays(indices, pa.array(self.enum, pa.string()))
        return pa.array(values, self.type)

    def restore(self, values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """The column as a JSON reader returned it (an enum as plain strings, a column of
        nulls as ``null``), cast back to this field's type; an enum's dictionary is its values
        in schema order, as :meth:`array` makes it.

        Raises:
            pyarrow.ArrowInvalid: a value does not fit the type.
        """
        if self.enum is not None:
            strings = pa.chunked_array(values).combine_chunks().cast(pa.string())
            dictionary = pa.array(self.enum, pa.string())
            indices = pc.index_in(strings, value_set=dictionary).cast(pa.int32())
            return pa.DictionaryArray.from_arrays(indices, dictionary)
        return values.cast(self.type)


def typed_fields(schema: Mapping[str, Any]) -> list[TypedField]:
    """One :class:`TypedField` per property of the object ``schema``, in property order."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    out = []
    for name, node in properties.items():
        typ, _, convert = _arrow(node, schema, 0)
        enum = _string_enum(node, schema)
        out.append(TypedField(str(name), typ, True, convert, tuple(enum) if enum else None))
    return out


_Mapped = tuple[pa.DataType, bool, Convert | None]


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


_AS_JSON: _Mapped = (pa.string(), True, _json_text)


def _arrow(node: Any, root: Mapping[str, Any], depth: int) -> _Mapped:
    """``(type, nullable, convert)`` of one schema node."""
    if depth > _MAX_DEPTH:
        return _AS_JSON  # a recursive schema: kept as JSON text
    if node is False:
        return pa.null(), True, None
    if not isinstance(node, Mapping):
        return _AS_JSON
    if "$ref" in node:
        return _arrow(_resolve(node, root), root, depth + 1)
    if isinstance(node.get("anyOf"), list):
        return _union(node["anyOf"], root, depth)
    enum = node.get("enum")
    if isinstance(enum, list) and enum:
        return _enum(enum)
    kind = node.get("type")
    if kind is None:
        kind = "object" if "properties" in node else "array" if "items" in node else None
    if kind == "object":
        return _struct(node, root, depth)
    if kind == "array":
        items = node.get("items")
        if not isinstance(items, Mapping):
            return _AS_JSON
        item, item_null, convert = _arrow(items, root, depth + 1)
        list_type = pa.list_(pa.field("item", item, nullable=item_null))
        if convert is None:
            return list_type, False, None
        return list_type, False, lambda v: [None if x is None else convert(x) for x in v]
    if isinstance(kind, str) and kind in _SCALARS:
        return _SCALARS[kind], kind == "null", None
    if "const" in node:
        return _enum([node["const"]])
    return _AS_JSON


def _union(branches: list[Any], root: Mapping[str, Any], depth: int) -> _Mapped:
    nullable = any(isinstance(b, Mapping) and b.get("type") == "null" for b in branches)
    mapped = [
        _arrow(b, root, depth + 1)
        for b in branches
        if not (isinstance(b, Mapping) and b.get("type") == "null")
    ]
    types = {m[0] for m in mapped}
    if len(types) == 1 and all(m[2] is None for m in mapped):
        return mapped[0][0], nullable or any(m[1] for m in mapped), None
    if types and types <= {pa.int64(), pa.float64()}:
        return pa.float64(), nullable, None
    if types and types <= {pa.string(), ENUM_TYPE} and all(m[2] is None for m in mapped):
        return pa.string(), nullable, None
    return pa.string(), True, _json_text


def _enum(values: list[Any]) -> _Mapped:
    nullable = None in values
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, str) for v in present):
        return ENUM_TYPE, nullable, None
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64(), nullable, None
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_(), nullable, None
    return _AS_JSON


def _struct(node: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> _Mapped:
    properties = node.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return _AS_JSON  # a free-form object: no fixed fields to type
    fields = []
    converts: dict[str, Convert] = {}
    for name, sub in properties.items():
        typ, nullable, convert = _arrow(sub, root, depth + 1)
        fields.append(pa.field(str(name), typ, nullable=nullable))
        if convert is not None:
            converts[str(name)] = convert
    if not converts:
        return pa.struct(fields), False, None

    def convert_object(value: Any) -> Any:
        out = dict(value)
        for key, convert in converts.items():
            if out.get(key) is not None:
                out[key] = convert(out[key])
        return out

    return pa.struct(fields), False, convert_object


def _resolve(node: Any, root: Mapping[str, Any]) -> Any:
    """``node`` with its ``$ref`` (``#/$defs/name``) followed, a few levels deep at most."""
    for _ in range(_MAX_DEPTH):
        ref = node.get("$ref") if isinstance(node, Mapping) else None
        if not isinstance(ref, str) or not ref.startswith("#"):
            return node
        target: Any = root
        for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else []:
            target = target.get(part) if isinstance(target, Mapping) else None
        node = target
    return node


def _string_enum(node: Any, root: Mapping[str, Any], depth: int = 0) -> list[str] | None:
    """The values of a string enum (or of an enum-or-null union), else None."""
    node = _resolve(node, root)
    if depth > _MAX_DEPTH:
        return None
    branches = node.get("anyOf") if isinstance(node, Mapping) else None
    if isinstance(branches, list):
        others = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
        return _string_enum(others[0], root, depth + 1) if len(others) == 1 else None
    enum = node.get("enum") if isinstance(node, Mapping) else None
    if not isinstance(enum, list) or not enum:
        return None
    present = [v for v in enum if v is not None]
    return present if present and all(isinstance(v, str) for v in present) else None
