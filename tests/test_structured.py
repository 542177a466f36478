"""Output schemas, pure: the field list, the strict-mode lint, Arrow types, judging one answer."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from enrich.structured import (
    FieldListError,
    OutputSchema,
    OutputSchemaRefused,
    check_output_schema,
    field_list_schema,
    is_json_schema,
    lint_schema,
)
from enrich.structured.arrow import ENUM_TYPE, typed_fields
from enrich.structured.output import recorded_fields


def obj(**properties: Any) -> dict[str, Any]:
    """A strict-mode object schema of ``properties``."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


STR, INT, NUM, BOOL = ({"type": t} for t in ("string", "integer", "number", "boolean"))

# -- the field list ---------------------------------------------------------------------------

FIELD_TYPES = [
    ("str", STR),
    ("string", STR),
    ("int", INT),
    ("float", NUM),
    ("bool", BOOL),
    (
        "enum[positive, negative, mixed]",
        {"type": "string", "enum": ["positive", "negative", "mixed"]},
    ),
    ("enum['a, b', c]", {"type": "string", "enum": ["a", "b", "c"]}),
    ('enum["x y", z]', {"type": "string", "enum": ["x y", "z"]}),
    ("list[str]", {"type": "array", "items": STR}),
    ("list[list[int]]", {"type": "array", "items": {"type": "array", "items": INT}}),
    ("list[enum[a, b]]", {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}),
    ("str?", {"anyOf": [STR, {"type": "null"}]}),
    ("list[int]?", {"anyOf": [{"type": "array", "items": INT}, {"type": "null"}]}),
    ({"street": "str", "zip": "str"}, obj(street=STR, zip=STR)),
    ([{"name": "str", "qty": "int"}], {"type": "array", "items": obj(name=STR, qty=INT)}),
]


@pytest.mark.parametrize(("spec", "schema"), FIELD_TYPES, ids=[str(s) for s, _ in FIELD_TYPES])
def test_a_field_list_type_becomes_its_json_schema(spec: Any, schema: dict[str, Any]) -> None:
    assert field_list_schema({"f": spec}) == obj(f=schema)


def test_a_field_list_keeps_its_order_and_passes_the_lint() -> None:
    fields = {
        "sentiment": "enum[positive, negative, mixed]",
        "score": "int",
        "ratio": "float",
        "ok": "bool",
        "topics": "list[str]",
        "summary": "str",
        "note": "str?",
        "address": {"street": "str", "zip": "str"},
        "items": [{"name": "str", "qty": "int"}],
    }
    schema = field_list_schema(fields)
    assert list(schema["properties"]) == list(fields)
    assert lint_schema(schema) == []


FIELD_ERRORS = [
    (
        {"score": "integer!"},
        "score: unknown type 'integer!' (str, int, float, bool, enum[a, b], "
        "list[T], T? or a nested mapping)",
    ),
    (
        {"score": 3},
        "score: 3 is not a type (str, int, float, bool, enum[a, b], list[T], T? or a "
        "nested mapping)",
    ),
    ({"s": "enum[]"}, "s: 'enum[]' has an empty value; list them: enum[a, b]"),
    ({"s": "enum[a, , b]"}, "s: 'enum[a, , b]' has an empty value; list them: enum[a, b]"),
    ({"s": "enum[a, b, a]"}, "s: 'enum[a, b, a]' lists 'a' twice"),
    (
        {"a": {"b": "list[what]"}},
        "a.b[]: unknown type 'what' (str, int, float, bool, enum[a, b], "
        "list[T], T? or a nested mapping)",
    ),
    ({"a": {}}, "a: no fields"),
    ({}, "(top level): no fields"),
    ({"a": ["str", "int"]}, "a: a list type is one element, e.g. [{name: str}]"),
    ({"2x": "str"}, "2x: a field name is letters, digits and '_' (not starting with a digit)"),
    ({"a-b": "str"}, "a-b: a field name is letters, digits and '_' (not starting with a digit)"),
]


@pytest.mark.parametrize(("fields", "message"), FIELD_ERRORS, ids=[m for _, m in FIELD_ERRORS])
def test_a_bad_field_list_names_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(FieldListError) as raised:
        field_list_schema(fields)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"type": "object", "properties": {}}, True),
        ({"properties": {"a": STR}}, True),
        ({"$defs": {}, "$ref": "#/$defs/x"}, True),
        ({"type": "str", "score": "int"}, False),  # a field called "type"
        ({"sentiment": "enum[a, b]"}, False),
    ],
)
def test_a_json_schema_is_told_from_a_field_list(value: dict[str, Any], expected: bool) -> None:
    assert is_json_schema(value) is expected


# -- the strict-mode lint ---------------------------------------------------------------------

LINT = [
    (
        {"type": "object", "properties": {"a": STR}, "required": ["a"]},
        ["$: set additionalProperties: false (strict mode requires it)"],
    ),
    (
        {**obj(a=STR, b=INT), "required": ["a"]},
        [
            "$.required: add 'b': strict mode requires every property; one that may be missing "
            "stays required and allows null (anyOf: [{type: string}, {type: 'null'}])"
        ],
    ),
    (
        {**obj(a=STR), "required": ["a", "z"]},
        ["$.required: 'z' is not a property; remove it or add it under properties"],
    ),
    (
        obj(a={"type": ["string", "null"]}),
        [
            '$.properties.a.type: ["string","null"] is a type array, which strict mode refuses; '
            "write anyOf: [{type: string}, {type: 'null'}]"
        ],
    ),
    (
        obj(a={"anyOf": [{"const": str(i)} for i in range(6)]}),
        [
            "$.properties.a.anyOf: 6 branches; strict mode allows at most 5: merge some (one "
            "enum for several constants, say)"
        ],
    ),
    (
        obj(a={"type": "string", "format": "uri"}),
        [
            '$.properties.a.format: "uri" is not a format strict mode supports (date-time, time, '
            "date, duration, email, hostname, ipv4, ipv6, uuid); drop it or use one of those"
        ],
    ),
    (
        obj(a={"type": "array", "items": True}),
        [
            "$.properties.a.items: items: true is not allowed; give the item schema, e.g. "
            "items: {type: string}"
        ],
    ),
    (
        obj(a={"type": "array"}),
        ["$.properties.a: an array needs items: the item schema, e.g. {type: string}"],
    ),
    (
        obj(a={"type": "str"}),
        [
            '$.properties.a.type: "str" is not a JSON Schema type (string, integer, number, '
            "boolean, object, array, null)"
        ],
    ),
    (
        obj(a={"type": "object", "properties": {"x": STR}}),
        [
            "$.properties.a: set additionalProperties: false (strict mode requires it)",
            "$.properties.a.required: add 'x': strict mode requires every property; one that "
            "may be missing stays required and allows null (anyOf: [{type: string}, "
            "{type: 'null'}])",
        ],
    ),
    (
        obj(
            a={
                "type": "array",
                "items": {"type": "object", "properties": {"x": STR}, "required": ["x"]},
            }
        ),
        ["$.properties.a.items: set additionalProperties: false (strict mode requires it)"],
    ),
    (
        obj(a={"$ref": "#/$defs/missing"}),
        ['$.properties.a.$ref: "#/$defs/missing" does not point into this schema\'s $defs'],
    ),
    (
        {**obj(a={"$ref": "#/$defs/A"}), "$defs": {"A": {"type": "object", "properties": {}}}},
        ["$.$defs.A: set additionalProperties: false (strict mode requires it)"],
    ),
    (
        obj(a={"type": "integer", "minimum": "zero"}),
        ["$.properties.a.minimum: not valid JSON Schema: 'zero' is not of type 'number'"],
    ),
    (
        obj(a="string"),
        ['$.properties.a: "string" is not a schema; write one, e.g. {type: string}'],
    ),
    (
        {"type": "array", "items": STR},
        [
            "$: the root must be an object with properties (type: object, properties: {...}): "
            "each property becomes a column"
        ],
    ),
]


@pytest.mark.parametrize(("schema", "lines"), LINT, ids=[lines[0][:60] for _, lines in LINT])
def test_the_lint_says_where_and_what_to_change(schema: dict[str, Any], lines: list[str]) -> None:
    assert [str(f) for f in lint_schema(schema)] == lines


def test_a_strict_schema_with_refs_unions_and_formats_has_no_findings() -> None:
    address = obj(street=STR, zip={"anyOf": [STR, {"type": "null"}]})
    schema = {
        **obj(
            when={"type": "string", "format": "date-time"},
            id={"type": "string", "format": "uuid"},
            home={"$ref": "#/$defs/address"},
            work={"anyOf": [{"$ref": "#/$defs/address"}, {"type": "null"}]},
            rating={"type": "string", "enum": ["1", "2", "3"]},
        ),
        "$defs": {"address": address},
    }
    assert lint_schema(schema) == []


def test_a_refused_schema_is_one_line_and_lists_every_finding() -> None:
    schema = {"type": "object", "properties": {"a": {"type": ["string", "null"]}}}
    with pytest.raises(OutputSchemaRefused) as raised:
        check_output_schema(schema, "job.yaml: prompt.output_schema")
    assert str(raised.value) == (
        "job.yaml: prompt.output_schema: $: set additionalProperties: false (strict mode "
        "requires it) (and 2 more; `enrich plan` lists them)"
    )
    assert [line.split(": ")[2] for line in raised.value.lines()] == [
        "$",
        "$.required",
        "$.properties.a.type",
    ]


# -- Arrow types ------------------------------------------------------------------------------


def not_null(name: str, typ: pa.DataType) -> pa.Field:
    return pa.field(name, typ, nullable=False)


ARROW = [
    (STR, pa.string()),
    ({"type": "string", "format": "date"}, pa.string()),
    (INT, pa.int64()),
    (NUM, pa.float64()),
    (BOOL, pa.bool_()),
    ({"type": "string", "enum": ["a", "b"]}, ENUM_TYPE),
    ({"enum": ["a", "b", None]}, ENUM_TYPE),
    ({"anyOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}]}, ENUM_TYPE),
    ({"type": "array", "items": STR}, pa.list_(not_null("item", pa.string()))),
    (
        {"type": "array", "items": {"anyOf": [INT, {"type": "null"}]}},
        pa.list_(pa.field("item", pa.int64())),
    ),
    (
        obj(street=STR, zip={"anyOf": [STR, {"type": "null"}]}),
        pa.struct([not_null("street", pa.string()), pa.field("zip", pa.string())]),
    ),
    (
        {"type": "array", "items": obj(name=STR, tags={"type": "array", "items": STR})},
        pa.list_(
            not_null(
                "item",
                pa.struct(
                    [
                        not_null("name", pa.string()),
                        not_null("tags", pa.list_(not_null("item", pa.string()))),
                    ]
                ),
            )
        ),
    ),
    ({"anyOf": [INT, {"type": "null"}]}, pa.int64()),
    ({"anyOf": [INT, NUM]}, pa.float64()),
    ({"anyOf": [STR, INT]}, pa.string()),  # mixed: the value's JSON text
    ({"type": "object", "properties": {}, "additionalProperties": False}, pa.string()),
    ({"$ref": "#/$defs/n"}, pa.int64()),
]


@pytest.mark.parametrize(("node", "arrow"), ARROW, ids=[str(a) for _, a in ARROW])
def test_each_property_has_its_arrow_type(node: dict[str, Any], arrow: pa.DataType) -> None:
    schema = {**obj(x=node), "$defs": {"n": INT}}
    (field,) = typed_fields(schema)
    assert field.name == "x" and field.nullable  # an error row has no value
    assert field.type == arrow
    assert str(field.type) == str(arrow)  # nullability of nested fields too


def test_typed_arrays_hold_the_values_and_null_for_rows_without_output() -> None:
    schema = obj(
        label={"type": "string", "enum": ["pos", "neg"]},
        score=INT,
        mixed={"anyOf": [STR, INT]},
        where=obj(city=STR),
    )
    output = OutputSchema(schema, prefix="completion")
    contents = [
        '{"label": "neg", "score": 3, "mixed": 7, "where": {"city": "Oslo"}}',
        None,
        '{"label": "pos", "score": 5, "mixed": "x", "where": {"city": "Rome"}}',
    ]
    arrays = output.arrays(contents)
    assert (
        list(arrays)
        == output.columns()
        == [
            "completion_label",
            "completion_score",
            "completion_mixed",
            "completion_where",
        ]
    )
    label = arrays["completion_label"]
    assert label.type == ENUM_TYPE and label.dictionary.to_pylist() == ["pos", "neg"]
    assert label.to_pylist() == ["neg", None, "pos"]
    assert arrays["completion_score"].to_pylist() == [3, None, 5]
    assert arrays["completion_mixed"].to_pylist() == ["7", None, '"x"']
    assert arrays["completion_where"].to_pylist() == [{"city": "Oslo"}, None, {"city": "Rome"}]


# -- judging one answer -----------------------------------------------------------------------

SCHEMA = obj(
    label={"type": "string", "enum": ["pos", "neg"]},
    score=INT,
    tags={"type": "array", "items": STR},
)

ANSWERS = [
    ('{"label": "pos", "score": 3, "tags": []}', None),
    ("", "empty answer: no JSON"),
    ("   ", "empty answer: no JSON"),
    (
        '{"label": "pos", "score": 3',
        "not JSON (unexpected end of data",
    ),
    ("Sure! Here it is", "not JSON (unexpected character"),
    (
        '{"label": "meh", "score": 3, "tags": []}',
        "does not match the schema: $.label: 'meh' is not one of ['pos', 'neg']",
    ),
    (
        '{"label": "pos", "score": "high", "tags": []}',
        "does not match the schema: $.score: 'high' is not of type 'integer'",
    ),
    (
        '{"label": "pos", "score": 1, "tags": [1]}',
        "does not match the schema: $.tags[0]: 1 is not of type 'string'",
    ),
    (
        '{"label": "pos", "tags": []}',
        "does not match the schema: $: 'score' is a required property",
    ),
    (
        '{"label": "pos", "score": 1, "tags": [], "extra": 1}',
        "does not match the schema: $: Additional properties are not allowed ('extra' was "
        "unexpected)",
    ),
    ("[1, 2]", "does not match the schema: $: [1, 2] is not of type 'object'"),
]


@pytest.mark.parametrize(
    ("content", "problem"), ANSWERS, ids=[c[:30] or "empty" for c, _ in ANSWERS]
)
def test_an_answer_is_judged_without_raising(content: str, problem: str | None) -> None:
    parsed = OutputSchema(SCHEMA, prefix="c").parse(content)
    if problem is not None and problem.startswith("not JSON"):
        # The parser's own words follow; only their start is ours.
        assert parsed.problem is not None and parsed.problem.startswith(problem)
    else:
        assert parsed.problem == problem
    assert parsed.ok is (problem is None)
    assert (parsed.value is not None) is (problem is None)


def test_the_response_format_is_strict_json_schema_under_a_fixed_name() -> None:
    output = OutputSchema(SCHEMA, prefix="anything")
    assert output.response_format() == {
        "type": "json_schema",
        "json_schema": {"name": "output", "strict": True, "schema": SCHEMA},
    }
    assert output.describe()["columns"] == {
        "anything_label": "dictionary<values=string, indices=int32, ordered=0>",
        "anything_score": "int64",
        "anything_tags": "list<item: string not null>",
    }


RECORDED = OutputSchema(
    {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": ["a", "b"]},
            "score": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    },
    prefix="out",
).describe()


@pytest.mark.parametrize(
    ("column", "as_read", "restored"),
    [
        ("out_label", pa.array(["b", None, "a"]), ["b", None, "a"]),
        ("out_label", pa.array([None, None]), [None, None]),  # a part of error rows only
        ("out_score", pa.array([None, None]), [None, None]),
        ("out_score", pa.array([3, None]), [3, None]),
        ("out_tags", pa.array([[], None]), [[], None]),
    ],
)
def test_a_column_read_from_json_is_restored_to_its_recorded_type(
    column: str, as_read: pa.Array, restored: list[Any]
) -> None:
    field = recorded_fields(RECORDED)[column]
    back = field.restore(as_read)
    assert back.type == field.type and str(back.type) == RECORDED["columns"][column]
    assert back.to_pylist() == restored
    if field.enum is not None:  # the dictionary is the enum's, in schema order
        assert back.dictionary.to_pylist() == ["a", "b"]


def test_recorded_fields_of_steps_and_of_another_version() -> None:
    assert list(recorded_fields({"steps": {"first": RECORDED}})) == list(RECORDED["columns"])
    # A column recorded with a type this code would not give it is left as read.
    other = {**RECORDED, "columns": {**RECORDED["columns"], "out_score": "double"}}
    assert list(recorded_fields(other)) == ["out_label", "out_tags"]
    assert recorded_fields({"name": "output"}) == {}
