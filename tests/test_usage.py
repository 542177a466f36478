"""Usage has one definition; the result's columns and the output schema follow from it."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from enrich.results import (
    RESULT_FIELDS,
    Result,
    added_columns,
    output_table,
    results_from_table,
    results_table,
)
from enrich.usage import USAGE_FIELDS, USAGE_TYPES, Usage

FULL_BODY: dict[str, Any] = {
    "usage": {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 3},
    },
    "time_info": {
        "queue_time": 0.001,
        "prompt_time": 0.002,
        "completion_time": 0.01,
        "total_time": 0.02,
    },
}


@pytest.mark.parametrize(
    ("body", "usage"),
    [
        pytest.param(
            FULL_BODY,
            Usage(12, 5, 17, 8, 3, 0.001, 0.002, 0.01, 0.02),
            id="every field",
        ),
        pytest.param({}, Usage(), id="no usage at all"),
        pytest.param(
            {"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
            Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
            id="no time_info, no cached tokens (an OpenAI-compatible server)",
        ),
        pytest.param(
            {"usage": {"prompt_tokens": 3.0, "prompt_tokens_details": None}, "time_info": None},
            Usage(prompt_tokens=3),
            id="null sections, a count sent as a float",
        ),
        pytest.param(
            {"usage": {"prompt_tokens": "3"}, "time_info": {"queue_time": 1}},
            Usage(queue_time=1.0),
            id="a count of the wrong type reads as absent; a whole-second timing as seconds",
        ),
        pytest.param(
            {"usage": ["not", "a", "mapping"], "time_info": {"total_time": 0.5}},
            Usage(total_time=0.5),
            id="a section of the wrong shape reads as absent",
        ),
    ],
)
def test_usage_from_a_response_body(body: dict[str, Any], usage: Usage) -> None:
    parsed = Usage.from_body(body)
    assert parsed == usage
    assert all(type(getattr(parsed, f)) is type(getattr(usage, f)) for f in USAGE_FIELDS)


def test_a_shared_usage_charges_no_tokens_and_keeps_the_timings() -> None:
    shared = Usage.from_body(FULL_BODY).shared()
    assert shared == Usage(0, 0, 0, 0, 0, 0.001, 0.002, 0.01, 0.02)


def test_two_requests_usage_adds_counts_and_timings() -> None:
    first = Usage.from_body(FULL_BODY)
    assert first.plus(Usage(prompt_tokens=1, reasoning_tokens=2)) == Usage(
        13, 5, 17, 8, 5, 0.001, 0.002, 0.01, 0.02
    )
    assert Usage(total_time=0.5).plus(Usage(total_time=0.25)).total_time == 0.75


# The output columns as users and files on disk know them: changing this list is a format change.
OUTPUT_SCHEMA = [
    ("row_id", pa.string()),
    ("request_hash", pa.string()),
    ("completion", pa.string()),
    ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("total_tokens", pa.int64()),
    ("cached_tokens", pa.int64()),
    ("reasoning_tokens", pa.int64()),
    ("queue_time", pa.float64()),
    ("prompt_time", pa.float64()),
    ("completion_time", pa.float64()),
    ("total_time", pa.float64()),
    ("model", pa.string()),
    ("request_id", pa.string()),
    ("attempts", pa.int32()),
    ("latency_s", pa.float64()),
    ("cost_usd", pa.float64()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("error_kind", pa.string()),
]


def test_added_columns_are_the_result_fields_with_usage_in_place() -> None:
    assert added_columns("completion") == [name for name, _ in OUTPUT_SCHEMA]
    assert added_columns("label")[2] == "label"
    assert set(USAGE_TYPES) <= set(RESULT_FIELDS)


def _results() -> list[Result]:
    paid = Result(
        completion="positive",
        finish_reason="stop",
        usage=Usage.from_body(FULL_BODY),
        model="m",
        request_id="req-1",
        attempts=2,
        latency_s=0.3,
        cost_usd=0.01,
    )
    error = Result(completion=None, attempts=1, status="error", error="HTTP 400: x")
    return [paid, paid.shared(), error]


def test_output_table_has_the_documented_schema() -> None:
    inputs = pa.table({"text": ["a", "b", "c"]})
    table = output_table(inputs, ["r1", "r2", "r3"], ["h1", "h1", "h2"], _results(), "completion")
    assert [(f.name, f.type) for f in table.schema] == [("text", pa.string()), *OUTPUT_SCHEMA]
    assert table.column("prompt_tokens").to_pylist() == [12, 0, 0]
    assert table.column("queue_time").to_pylist() == [0.001, 0.001, None]


@pytest.mark.parametrize("completion_column", ["completion", "label"])
def test_results_round_trip_through_a_table(completion_column: str) -> None:
    paid, _, error = _results()
    journal = results_table(["h1", "h2"], [paid, error])
    assert results_from_table(journal) == {"h1": paid, "h2": error}
    part = output_table(
        pa.table({"text": ["a", "b"]}), ["r1", "r2"], ["h1", "h2"], [paid, error], completion_column
    )
    assert results_from_table(part, completion_column) == {"h1": paid, "h2": error}


def test_a_journal_without_usage_columns_reads_as_no_usage() -> None:
    old = pa.table({"request_hash": ["h"], "completion": ["x"], "status": ["ok"]})
    assert results_from_table(old) == {"h": Result(completion="x")}
