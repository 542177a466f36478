"""What ``enrich try`` computes from sampled rows, all pure, table first: percentiles,
distributions, figures per row, the projection of the full run, agreement and gold fields."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from enrich.errors import ConfigError
from enrich.trial.compare import agreement, gold_field, same
from enrich.trial.figures import FieldRef, RunShape, distribution, measure, percentile, project
from enrich.trial.report import ranked_values


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([3.0], 99, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([4.0, 1.0, 3.0, 2.0], 95, 4.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
    ],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["b", "a", "b", None], [("b", 2), ("a", 1), ("(none)", 1)]),
        ([["price", "quality"], ["price"], None], [("price", 2), ("quality", 1), ("(none)", 1)]),
        ([True, False, True], [("true", 2), ("false", 1)]),
        ([5, 5.0, 4], [("5", 2), ("4", 1)]),
        (list("abcdefghij"), [(c, 1) for c in "abcdefgh"] + [("(other)", 2)]),
        # many distinct numbers: six equal bins from the least to the most
        (
            [*range(12), None],
            [
                ("0–1.83", 2),
                ("1.83–3.67", 2),
                ("3.67–5.5", 2),
                ("5.5–7.33", 2),
                ("7.33–9.17", 2),
                ("9.17–11", 2),
                ("(none)", 1),
            ],
        ),
    ],
)
def test_distribution(values: list[Any], expected: list[tuple[str, int]]) -> None:
    assert distribution(values) == expected


def rows_table(**columns: list[Any]) -> pa.Table:
    return pa.table(columns)


def test_measure_counts_rates_tokens_cost_and_latency_per_row() -> None:
    table = rows_table(
        request_hash=["h1", "h1", "h2", "h3"],
        completion_label=["a", "a", "b", None],
        prompt_tokens=[10, 0, 12, 11],
        completion_tokens=[5, 0, 6, 7],
        reasoning_tokens=[1, 0, 2, 3],
        attempts=[1, 0, 1, 2],
        latency_s=[0.2, 0.2, 0.4, 1.0],
        cost_usd=[0.001, 0.0, 0.002, 0.003],
        status=["ok", "ok", "ok", "error"],
        error_kind=[None, None, None, "invalid_output"],
    )
    figures = measure("base", "m", table, [FieldRef("label", "completion_label")], requests=3)
    assert (figures.rows, figures.ok, figures.errors, figures.invalid) == (4, 3, 1, 1)
    assert figures.error_rate == figures.invalid_rate == 0.25
    assert figures.error_kinds == {"invalid_output": 1}
    assert figures.reused == 1  # the row that shares h1's request
    assert figures.prompt_tokens_per_row == 33 / 4
    assert figures.reasoning_tokens_per_row == 6 / 4
    assert figures.cost_per_row_usd == pytest.approx(0.0015)
    assert figures.latency_s == {"p50": 0.2, "p95": 1.0, "p99": 1.0}
    assert figures.requests_per_row == 1.0
    assert figures.distributions == {"label": [("a", 2), ("b", 1), ("(none)", 1)]}


@pytest.mark.parametrize(
    ("rpm", "tpm", "concurrency", "duration", "bound_by"),
    [
        # 1,000 requests at 100 per minute: the first 100 at once, then 9 minutes
        (100, None, 64, 540, "requests per minute"),
        # each request uses 10 prompt + 25 completion tokens (as observed): 35,000 at 7,000
        # per minute, the first 7,000 at once
        (None, 7_000, 64, 240, "tokens per minute"),
        # 1,000 requests of 0.5 s, 10 at a time
        (None, None, 10, 50, "concurrency"),
    ],
)
def test_project_scales_the_sample_to_the_rows_still_to_send(
    rpm: float | None, tpm: float | None, concurrency: int, duration: float, bound_by: str
) -> None:
    table = rows_table(
        request_hash=["h1", "h2"],
        prompt_tokens=[10, 10],
        completion_tokens=[20, 30],
        reasoning_tokens=[0, 0],
        attempts=[1, 1],
        latency_s=[0.5, 0.5],
        cost_usd=[0.01, 0.03],
        status=["ok", "ok"],
        error_kind=[None, None],
    )
    figures = measure("base", "m", table, [], requests=2)
    shape = RunShape(
        rows=1_002,
        rows_to_send=1_000,
        max_completion_tokens=100,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        max_concurrency=concurrency,
    )
    projected = project(figures, shape)
    assert projected.cost_usd == pytest.approx(0.02 * 1_002)
    assert projected.cost_to_send_usd == pytest.approx(0.02 * 1_000)
    assert projected.tokens_to_send == 35 * 1_000
    assert (projected.duration_s, projected.bound_by) == (duration, bound_by)


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        ("Positive ", "positive", True),
        (4, "4.0", True),
        (["price", "Quality"], ["quality", "price"], True),
        (["price"], ["price", "quality"], False),
        (True, "true", True),
        (None, None, False),  # two error rows do not agree
        ("a", None, False),
    ],
)
def test_same(a: Any, b: Any, agree: bool) -> None:
    assert same(a, b) is agree


def test_agreement_is_a_share_of_all_rows() -> None:
    assert agreement(["a", "b", None, "c"], ["a", "x", None, "C"]) == 0.5
    assert agreement([], []) is None


FIELDS = [FieldRef("triage.sentiment", "triage_sentiment"), FieldRef("triage.topics", "x")]


@pytest.mark.parametrize(
    ("spec", "fields", "expected"),
    [
        ("sentiment", FIELDS, ("sentiment", "triage.sentiment")),
        ("label=triage.topics", FIELDS, ("label", "triage.topics")),
        ("label", FIELDS[:1], ("label", "triage.sentiment")),
        ("label", [], ("label", "completion")),
        ("label", FIELDS, "say which field it grades, e.g. --gold label=triage.sentiment"),
        ("label=colour", FIELDS, "no field 'colour' (fields: triage.sentiment, triage.topics)"),
    ],
)
def test_gold_field(spec: str, fields: list[FieldRef], expected: tuple[str, str] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            gold_field(spec, fields, "job.yaml")
    else:
        assert gold_field(spec, fields, "job.yaml") == expected


def test_ranked_values_keep_the_most_frequent_and_fold_the_rest_into_other() -> None:
    a = {f"v{i}": 10 - i for i in range(8)} | {"(other)": 3, "(none)": 1}
    b = {"v9": 20, "v0": 1}
    values, merged = ranked_values([a, b])
    assert values[:3] == ["v9", "v0", "v1"] and values[-2:] == ["(other)", "(none)"]
    assert len(values) == 8 + 2
    assert sum(merged[0].values()) == sum(a.values())  # v7 (3) went into (other)
    assert merged[0]["(other)"] == 3 + 3 and merged[1] == {"v9": 20, "v0": 1}
