"""Prompt templates: parsing, checks against the input, batch rendering, messages."""

from __future__ import annotations

from typing import Any

import pytest

from enrich.errors import ConfigError
from enrich.template import PromptTemplate


@pytest.mark.parametrize(
    ("template", "fields"),
    [
        ("Classify: {text}", ("text",)),
        ("{a} and {b} and {a}", ("a", "b", "a")),
        ("no fields at all", ()),
        ("{{literal}} {x}", ("x",)),
        ("{product name}", ("product name",)),
        ("{0}", ("0",)),
        ("{x:}", ("x",)),
    ],
)
def test_fields_are_parsed_in_order(template: str, fields: tuple[str, ...]) -> None:
    compiled = PromptTemplate.compile(None, template)
    assert compiled.fields == fields
    assert compiled.columns == frozenset(fields)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{a.b}", "prompt.template: field {a.b}: only bare column names are supported"),
        ("{a[0]}", "prompt.template: field {a[0]}: only bare column names are supported"),
        ("{a!r}", "prompt.template: field {a!r}: conversions (!r, !s, !a) are not supported"),
        ("{a:>10}", "prompt.template: field {a:>10}: format specs are not supported"),
        ("x {} y", "prompt.template: field {}: positional fields are not supported"),
        ("a } b", "prompt.template: Single '}' encountered in format string"),
        ("a { b", "prompt.template: "),
    ],
)
def test_disallowed_fields_are_config_errors(template: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        PromptTemplate.compile(None, template)
    assert str(info.value).startswith(message)


def test_errors_are_prefixed_with_where() -> None:
    with pytest.raises(ConfigError, match=r"^configs/x\.yaml: prompt\.template: field \{a\.b\}"):
        PromptTemplate.compile(None, "{a.b}", where="configs/x.yaml")


def test_check_names_the_missing_column_and_what_exists() -> None:
    compiled = PromptTemplate.compile(None, "{text} {stars}")
    compiled.check(["text", "stars", "id"], "configs/x.yaml")
    with pytest.raises(ConfigError) as info:
        compiled.check(["id", "text", "rating"], "configs/x.yaml")
    assert str(info.value) == (
        "configs/x.yaml: prompt.template uses column 'stars' that the input does not have "
        "(has: id, text, rating)"
    )


@pytest.mark.parametrize(
    ("template", "columns", "expected"),
    [
        ("Review: {text}", {"text": ["good", "bad"]}, ["Review: good", "Review: bad"]),
        ("{text}", {"text": ["a", None, 3]}, ["a", "", "3"]),
        ("{a}-{b}", {"a": [1, None], "b": [2.5, True]}, ["1-2.5", "-True"]),
        ("{{{a}}}", {"a": ["x"]}, ["{x}"]),
        ("100% {a} %s %%", {"a": ["sure"]}, ["100% sure %s %%"]),
        ("{a}{a}", {"a": ["ab"]}, ["abab"]),
        ("static {{text}}", {}, ["static {text}", "static {text}"]),
        ("{a}", {"a": ["x", "y", "z"]}, ["x", "y"]),
        ("{a}", {"a": ({"k": 1},)}, ['{"k":1}']),
        (
            "{a}",
            {"a": [[1, "x", None], {"k": {"n": [2.5]}}]},
            ['[1,"x",null]', '{"k":{"n":[2.5]}}'],
        ),
    ],
)
def test_render_users(template: str, columns: dict[str, Any], expected: list[str]) -> None:
    compiled = PromptTemplate.compile(None, template)
    assert compiled.render_users(columns, len(expected)) == expected


def test_render_users_ignores_unused_columns_and_extra_rows() -> None:
    compiled = PromptTemplate.compile(None, "{a}")
    assert compiled.render_users({"a": ["1", "2", "3"], "b": [object()]}, 2) == ["1", "2"]


def test_render_user_matches_batch_rendering() -> None:
    compiled = PromptTemplate.compile(None, "Product: {product}\nReview: {text}")
    row = {"product": "Lamp", "text": None, "other": 1}
    assert compiled.render_user(row) == "Product: Lamp\nReview: "


def test_rendering_many_rows_keeps_order() -> None:
    compiled = PromptTemplate.compile(None, "#{i}: {s}")
    n = 10_000
    out = compiled.render_users({"i": list(range(n)), "s": ["x"] * n}, n)
    assert out[0] == "#0: x"
    assert out[-1] == f"#{n - 1}: x"
    assert len(out) == n


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        (None, [{"role": "user", "content": "hi"}]),
        (
            "Be brief.",
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        ),
        (
            'Reply as {{"label": ...}}',
            [
                {"role": "system", "content": 'Reply as {"label": ...}'},
                {"role": "user", "content": "hi"},
            ],
        ),
    ],
)
def test_messages(system: str | None, expected: list[dict[str, str]]) -> None:
    assert PromptTemplate.compile(system, "{x}").messages("hi") == expected


def test_system_message_may_not_use_fields() -> None:
    with pytest.raises(ConfigError, match=r"^prompt\.system: field \{product\}: .*static text"):
        PromptTemplate.compile("You review {product}.", "{text}")
