"""The simulator speaks structured outputs and reasoning, through the real SDK over HTTP.

For a ``json_schema`` request it answers a schema-valid object, the same for the same request;
with faults it answers JSON that does not parse, JSON cut short, or nothing after spending the
budget on reasoning. A reasoning model (``gpt-oss-*``) always reports
``usage.completion_tokens_details.reasoning_tokens``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from cerebras.cloud.sdk import Cerebras
from cerebras.cloud.sdk.types.chat.chat_completion import ChatCompletionResponse
from jsonschema import Draft202012Validator

from enrich.sim import SimConfig, ThreadedSimulator
from enrich.sim.model import Generation, fake_json, generate, reasoning_spend, spoil
from enrich.structured import field_list_schema
from enrich.tokens import count_text_tokens

MODEL = "gpt-oss-120b"
MESSAGES: Any = [{"role": "user", "content": "Review: the kettle broke after a week."}]

SCHEMAS: dict[str, dict[str, Any]] = {
    "fields": field_list_schema(
        {
            "sentiment": "enum[positive, negative, mixed]",
            "score": "int",
            "ratio": "float",
            "ok": "bool",
            "topics": "list[str]",
            "note": "str?",
            "address": {"street": "str", "zip": "str"},
            "items": [{"name": "str", "qty": "int"}],
        }
    ),
    "bounds-and-formats": {
        "type": "object",
        "properties": {
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
            "when": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        },
        "required": ["stars", "when", "id", "tags"],
        "additionalProperties": False,
    },
    "refs-and-unions": {
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/place"},
            "work": {"anyOf": [{"$ref": "#/$defs/place"}, {"type": "null"}]},
            "value": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "boolean"}]},
        },
        "required": ["home", "work", "value"],
        "additionalProperties": False,
        "$defs": {
            "place": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "kind": {"const": "place"}},
                "required": ["city", "kind"],
                "additionalProperties": False,
            }
        },
    },
    "nested-lists": field_list_schema({"grid": "list[list[int]]", "labels": "list[enum[a, b]]"}),
}


def response_format(schema: dict[str, Any]) -> Any:
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "strict": True, "schema": schema},
    }


@pytest.fixture
def make_server() -> Iterator[Callable[..., ThreadedSimulator]]:
    with ExitStack() as stack:

        def make(**settings: Any) -> ThreadedSimulator:
            return stack.enter_context(ThreadedSimulator(SimConfig(**settings)))

        yield make


def complete(sim: ThreadedSimulator, **request: Any) -> ChatCompletionResponse:
    with Cerebras(
        api_key="k", base_url=sim.base_url, warm_tcp_connection=False, max_retries=0
    ) as client:
        response = client.chat.completions.create(
            **{"model": MODEL, "messages": MESSAGES, **request}
        )
    assert isinstance(response, ChatCompletionResponse)
    return response


def content(response: ChatCompletionResponse) -> str:
    text = response.choices[0].message.content
    assert isinstance(text, str)
    return text


@pytest.mark.parametrize("name", SCHEMAS)
def test_a_json_schema_request_gets_a_schema_valid_object(
    make_server: Callable[..., ThreadedSimulator], name: str
) -> None:
    sim = make_server()
    schema = SCHEMAS[name]
    validator = Draft202012Validator(schema)
    answers = []
    for i in range(8):
        messages = [{"role": "user", "content": f"Review {i}: fine."}]
        response = complete(
            sim,
            messages=messages,
            response_format=response_format(schema),
            max_completion_tokens=2000,
        )
        assert response.choices[0].finish_reason == "stop"
        value = json.loads(content(response))
        assert not list(validator.iter_errors(value)), value
        again = complete(
            sim,
            messages=messages,
            response_format=response_format(schema),
            max_completion_tokens=2000,
        )
        assert content(again) == content(response)  # deterministic per request
        answers.append(value)
    assert len({json.dumps(a, sort_keys=True) for a in answers}) > 1  # and varied across requests


def test_values_are_plausible_for_each_kind() -> None:
    schema = SCHEMAS["fields"]
    values = [fake_json(schema, random.Random(seed), schema) for seed in range(200)]
    assert {v["sentiment"] for v in values} == {"positive", "negative", "mixed"}
    assert all(isinstance(v["score"], int) and 0 <= v["score"] <= 100 for v in values)
    assert all(v["topics"] and all(t.strip() for t in v["topics"]) for v in values)
    notes = [v["note"] for v in values]
    assert None in notes and any(isinstance(n, str) for n in notes)  # nullable: sometimes null
    assert all(set(v["address"]) == {"street", "zip"} for v in values)


@pytest.mark.parametrize(
    ("settings", "model", "effort", "reasoning"),
    [
        ({}, "gpt-oss-120b", None, 0),  # reported even when none are spent
        ({"reasoning_tokens": 20}, "gpt-oss-120b", None, 20),
        ({"reasoning_tokens": 20}, "gpt-oss-120b", "low", 10),
        ({"reasoning_tokens": 20}, "gpt-oss-120b", "high", 40),
        ({"reasoning_tokens": 20}, "gpt-oss-120b", "none", 0),
        ({"reasoning_tokens": 20}, "zai-glm-4.7", None, None),  # not reported
    ],
)
def test_a_reasoning_model_reports_its_reasoning_tokens(
    make_server: Callable[..., ThreadedSimulator],
    settings: dict[str, Any],
    model: str,
    effort: str | None,
    reasoning: int | None,
) -> None:
    sim = make_server(**settings)
    extra = {} if effort is None else {"reasoning_effort": effort}
    response = complete(sim, model=model, max_completion_tokens=200, **extra)
    usage = response.usage
    assert usage is not None
    details = usage.completion_tokens_details
    if reasoning is None:
        assert details is None
        return
    assert details is not None and details.reasoning_tokens == reasoning
    assert usage.completion_tokens == reasoning + count_text_tokens(content(response))


def test_reasoning_counts_against_the_budget(
    make_server: Callable[..., ThreadedSimulator],
) -> None:
    sim = make_server(reasoning_tokens=30)
    starved = complete(sim, max_completion_tokens=30)
    assert content(starved) == "" and starved.choices[0].finish_reason == "length"
    assert starved.usage is not None and starved.usage.completion_tokens == 30
    squeezed = complete(sim, max_completion_tokens=32)
    assert squeezed.choices[0].finish_reason == "length"
    assert count_text_tokens(content(squeezed)) == 2
    assert squeezed.usage is not None and squeezed.usage.completion_tokens == 32


@pytest.mark.parametrize(
    ("fault", "finish"), [("invalid_json", "stop"), ("truncated_json", "length")]
)
def test_faults_spoil_structured_answers(
    make_server: Callable[..., ThreadedSimulator], fault: str, finish: str
) -> None:
    sim = make_server()
    sim.set_faults(**{fault: 1.0})
    fmt = response_format(SCHEMAS["fields"])
    response = complete(sim, response_format=fmt, max_completion_tokens=2000)
    assert response.choices[0].finish_reason == finish
    with pytest.raises(json.JSONDecodeError):
        json.loads(content(response))
    usage = response.usage
    assert usage is not None and usage.completion_tokens == count_text_tokens(content(response))
    # Free text has no JSON to spoil: answered normally and not counted as a fault.
    plain = complete(sim, messages=[{"role": "user", "content": "Hello."}])
    assert plain.choices[0].finish_reason == "stop"
    assert sim.stats.faults == {fault: 1}


def test_a_starved_answer_is_empty_and_bills_the_whole_budget(
    make_server: Callable[..., ThreadedSimulator],
) -> None:
    sim = make_server()
    sim.set_faults(reasoning_starved=1.0)
    response = complete(sim, max_completion_tokens=77, stream=False)
    assert content(response) == "" and response.choices[0].finish_reason == "length"
    usage = response.usage
    assert usage is not None and usage.completion_tokens == 77
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 77


SPOILED = Generation('{"a":1,"b":[2]}', "stop", 9, 4)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("invalid_json", Generation('{"a":1,"b":[2],}', "stop", 4 + 4, 4)),
        ("truncated_json", Generation('{"a":1,', "length", 4 + 2, 4)),
        ("reasoning_starved", Generation("", "length", 50, 50)),
        ("fail_500", SPOILED),
    ],
)
def test_spoil(fault: str, expected: Generation) -> None:
    assert spoil(SPOILED, fault, 50) == expected


@pytest.mark.parametrize(
    ("request_fields", "spend"),
    [
        ({"model": "gpt-oss-120b"}, 40),
        ({"model": "gpt-oss-120b", "reasoning_effort": "low"}, 20),
        ({"model": "gpt-oss-120b", "reasoning_effort": "high"}, 80),
        ({"model": "gpt-oss-120b", "reasoning_effort": "none"}, 0),
        ({"model": "zai-glm-4.7"}, 0),
    ],
)
def test_reasoning_spend(request_fields: dict[str, Any], spend: int) -> None:
    assert reasoning_spend(request_fields, 40) == spend
    generated = generate(
        {**request_fields, "messages": MESSAGES}, max_default=8, reasoning_tokens=40
    )
    assert generated.reasoning_tokens == spend
