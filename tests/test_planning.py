"""Planning, identity and estimates: pure functions, tested table-first."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from enrich.config import JobConfig
from enrich.context import ContextWindow, PromptTally
from enrich.hashing import RequestHasher, job_fingerprint, request_hash
from enrich.planning import (
    NICE_CHUNK_ROWS,
    ChunkSize,
    Estimate,
    automatic_chunk_size,
    chunk_size,
    combine_steps,
    completion_budgets,
    estimate,
    plan_chunks,
)
from enrich.results import reusable
from enrich.summary import ChunkSummary, add_latency, merge, percentile


@dataclass(frozen=True)
class Source:
    key: str
    version: str
    num_rows: int


SOURCES = [Source("a.jsonl", "v1", 10), Source("b.jsonl", "v1", 0), Source("c.jsonl", "v2", 4)]


@pytest.mark.parametrize(
    ("rows_per_chunk", "bounds"),
    [
        (4, [(0, 0, 4), (0, 4, 8), (0, 8, 10), (2, 0, 4)]),
        (10, [(0, 0, 10), (2, 0, 4)]),
        (100, [(0, 0, 10), (2, 0, 4)]),
        (1, [(0, i, i + 1) for i in range(10)] + [(2, i, i + 1) for i in range(4)]),
    ],
)
def test_chunks_cover_every_row_once_in_order(
    rows_per_chunk: int, bounds: list[tuple[int, int, int]]
) -> None:
    chunks = plan_chunks(SOURCES, rows_per_chunk, "fp")
    assert [(c.source_index, c.start, c.stop) for c in chunks] == bounds
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_planning_is_deterministic_and_ids_follow_what_shapes_them() -> None:
    first = plan_chunks(SOURCES, 4, "fp")
    assert first == plan_chunks(SOURCES, 4, "fp")
    other_job = plan_chunks(SOURCES, 4, "fp2")
    assert [c.slot_id for c in other_job] == [c.slot_id for c in first]  # same slices
    assert not {c.chunk_id for c in other_job} & {c.chunk_id for c in first}
    changed = plan_chunks([Source("a.jsonl", "v9", 10), *SOURCES[1:]], 4, "fp")
    assert changed[0].chunk_id != first[0].chunk_id  # a new version of a file is new work
    assert changed[0].slot_id == first[0].slot_id  # ... that may reuse the old results
    assert changed[-1] == first[-1]


def test_plan_rejects_empty_chunks() -> None:
    with pytest.raises(ValueError):
        plan_chunks(SOURCES, 0, "fp")


# (requests/min, tokens/min, max_completion_tokens, max_concurrency, chunks in flight) -> rows
@pytest.mark.parametrize(
    ("rpm", "tpm", "completion", "concurrency", "in_flight", "rows", "bound"),
    [
        # No quota: 64 requests at 0.2 s + 256 tokens at 1,000/s, over 4 chunks: 35 rows/s a
        # chunk, 1,053 rows in 30 s.
        (None, None, 256, 64, 4, 1000, "concurrency"),
        (None, None, 64, 64, 4, 2000, "concurrency"),  # shorter answers: 1,818
        (None, None, 256, 64, 1, 5000, "concurrency"),  # 4,210: nearer 5,000 than 2,000
        (None, None, 256, 16, 4, 200, "concurrency"),  # 263
        (None, None, 256, 512, 1, 10_000, "concurrency"),  # 33,684, clamped
        (None, None, 256, 1, 4, 100, "concurrency"),  # 16, clamped
        # The sample job: 1,000 requests a minute bind first (16.7/s): 125 rows -> 100.
        (1000, 1_000_000, 64, 64, 4, 100, "requests per minute"),
        (4000, None, 256, 64, 4, 500, "requests per minute"),  # 500 exactly
        (6000, None, 256, 64, 4, 1000, "requests per minute"),  # 750: nearer 1,000 than 500
        (60_000, None, 256, 64, 4, 1000, "concurrency"),  # the quota is out of reach
        # 1M tokens a minute at 500 + 1,000 tokens a request: 11.1 requests/s -> 83 -> 100.
        (None, 1_000_000, 1000, 64, 4, 100, "tokens per minute"),
        (None, 10_000_000, 100, 256, 2, 5000, "tokens per minute"),  # 6,000 -> 5,000
        (30, 60_000, 256, 64, 4, 100, "requests per minute"),  # a small account: the floor
    ],
)
def test_automatic_chunk_size_follows_the_binding_limit(
    rpm: float | None,
    tpm: float | None,
    completion: int,
    concurrency: int,
    in_flight: int,
    rows: int,
    bound: str,
) -> None:
    size = automatic_chunk_size(
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        max_completion_tokens=[completion],
        max_concurrency=concurrency,
        chunks_in_flight=in_flight,
    )
    assert (size.rows, size.automatic) == (rows, True)
    assert size.rows in NICE_CHUNK_ROWS
    assert f"bound by {bound}" in size.reason


@pytest.mark.parametrize(
    ("rpm", "tpm", "budgets", "rows", "bound"),
    [
        # Two steps of 64 tokens: twice the slot time a row, 909 rows in 30 s -> 1,000.
        (None, None, [64, 64], 1000, "concurrency"),
        (None, None, [64], 2000, "concurrency"),
        # 4,000 requests a minute over three requests a row: 22 rows/s, 167 -> 200.
        (4000, None, [64, 64, 64], 200, "requests per minute"),
        # 3M tokens a minute, 564 + 1,500 tokens reserved a row: 24 rows/s, 182 -> 200.
        (None, 3_000_000, [64, 1000], 200, "tokens per minute"),
    ],
)
def test_automatic_chunk_size_counts_every_request_of_a_row(
    rpm: float | None, tpm: float | None, budgets: list[int], rows: int, bound: str
) -> None:
    size = automatic_chunk_size(
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        max_completion_tokens=budgets,
        max_concurrency=64,
        chunks_in_flight=4,
    )
    assert size.rows == rows and f"bound by {bound}" in size.reason


def test_chunk_size_is_the_configs_when_it_sets_one() -> None:
    base = {
        "name": "j",
        "input": {"path": "in.jsonl"},
        "prompt": {"template": "{text}"},
        "model": "m",
        "output": {"path": "out"},
    }
    assert chunk_size(JobConfig.model_validate(base)).rows == 1000  # the defaults' size
    explicit = {**base, "execution": {"rows_per_chunk": 7}}
    assert chunk_size(JobConfig.model_validate(explicit)) == ChunkSize(
        7, False, "execution.rows_per_chunk"
    )
    auto = {**base, "execution": {"rows_per_chunk": "auto", "requests_per_minute": 4000}}
    assert chunk_size(JobConfig.model_validate(auto)).rows == 500
    steps = {
        **{k: v for k, v in base.items() if k != "prompt"},
        "params": {"max_completion_tokens": 64},
        "steps": [
            {"name": "a", "template": "{text}"},
            {"name": "b", "template": "{a.completion}", "params": {"max_completion_tokens": 1000}},
        ],
    }
    assert completion_budgets(JobConfig.model_validate(steps)) == [64, 1000]


MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
SIM = "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("model", "params", "messages", "same"),
    [
        ("m", {"temperature": 0}, MESSAGES, True),
        ("m2", {"temperature": 0}, MESSAGES, False),
        ("m", {"temperature": 1}, MESSAGES, False),
        ("m", {"temperature": 0, "seed": 1}, MESSAGES, False),
        ("m", {"temperature": 0}, [{"role": "user", "content": "u"}], False),
    ],
)
def test_request_hash_identity(
    model: str, params: dict[str, object], messages: list[dict[str, str]], same: bool
) -> None:
    base = request_hash(SIM, "m", {"temperature": 0}, MESSAGES)
    assert (request_hash(SIM, model, params, messages) == base) is same
    assert RequestHasher(SIM, model, params)(messages) == request_hash(SIM, model, params, messages)


def test_request_hash_covers_the_endpoint() -> None:
    params = {"temperature": 0}
    assert request_hash(SIM, "m", params, MESSAGES) != request_hash(
        "https://api.cerebras.ai", "m", params, MESSAGES
    )


def test_job_fingerprint_ignores_key_order() -> None:
    assert job_fingerprint({"a": 1, "b": [1, 2]}) == job_fingerprint({"b": [1, 2], "a": 1})
    assert job_fingerprint({"a": 1}) != job_fingerprint({"a": 2})


@pytest.mark.parametrize(
    ("rpm", "tpm", "latency", "duration", "bound_by"),
    [
        (None, None, None, None, "unknown"),
        (60, None, None, 940, "requests per minute"),  # 1000 rows, the first 60 at once
        (None, 120_000, None, 50, "tokens per minute"),  # 220k tokens, 120k at once
        (1000, None, 1.0, 16, "concurrency"),  # 1000 rows x 1 s / 64
    ],
)
def test_estimate_duration_is_the_slowest_bound(
    rpm: float | None, tpm: float | None, latency: float | None, duration: int | None, bound_by: str
) -> None:
    est = estimate(
        rows=1000,
        chunks=10,
        pending_rows=1000,
        avg_prompt_tokens=100,
        max_completion_tokens=120,
        input_price=0.35,
        output_price=0.75,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        max_concurrency=64,
        seconds_per_request=latency,
    )
    assert est.prompt_tokens == 100_000 and est.completion_tokens == 120_000
    assert est.cost_usd == pytest.approx((100_000 * 0.35 + 120_000 * 0.75) / 1e6)
    assert (est.duration_s, est.bound_by) == (duration, bound_by)


@pytest.mark.parametrize(
    ("overflow", "observed", "sent", "completion", "basis", "tpm_duration"),
    [
        (0, None, 1000, 120_000, "max_completion_tokens (120) per row, the worst case", 50),
        # Rows that cannot fit the context are never sent: no tokens, no cost, no time.
        (400, None, 600, 72_000, "max_completion_tokens (120) per row, the worst case", 6),
        (1000, None, 0, 0, "max_completion_tokens (120) per row, the worst case", 0),
        # Observed completion lengths (a sample run) replace the worst case.
        (0, 20.0, 1000, 20_000, "20.0 per row, as observed in a sample run", 0),
        (500, 30.0, 500, 15_000, "30.0 per row, as observed in a sample run", 0),
    ],
)
def test_estimate_counts_only_rows_that_fit_at_the_completion_assumed(
    overflow: int,
    observed: float | None,
    sent: int,
    completion: int,
    basis: str,
    tpm_duration: int,
) -> None:
    est = estimate(
        rows=1000,
        chunks=10,
        pending_rows=1000,
        avg_prompt_tokens=100,
        max_completion_tokens=120,
        input_price=0.35,
        output_price=0.75,
        requests_per_minute=None,
        tokens_per_minute=120_000,
        max_concurrency=64,
        overflow_rows=overflow,
        completion_tokens_per_row=observed,
    )
    assert (est.pending_rows, est.overflow_rows) == (1000, overflow)
    assert (est.prompt_tokens, est.completion_tokens) == (100 * sent, completion)
    assert est.cost_usd == pytest.approx((100 * sent * 0.35 + completion * 0.75) / 1e6)
    assert est.completion_basis == basis
    assert est.duration_s == tpm_duration


def test_steps_add_up_and_are_paced_together() -> None:
    def step(pending: int, overflow: int, prompt: float, budget: int, price: float) -> Estimate:
        return estimate(
            rows=100,
            chunks=2,
            pending_rows=pending,
            avg_prompt_tokens=prompt,
            max_completion_tokens=budget,
            input_price=price,
            output_price=price,
            requests_per_minute=None,
            tokens_per_minute=None,
            max_concurrency=8,
            overflow_rows=overflow,
        )

    first, second = step(100, 0, 50, 100, 1.0), step(100, 10, 200, 20, 2.0)
    total = combine_steps([first, second], requests_per_minute=60, tokens_per_minute=None,
                          max_concurrency=8)  # fmt: skip
    assert (total.rows, total.chunks, total.pending_rows, total.overflow_rows) == (100, 2, 200, 10)
    assert total.prompt_tokens == 5_000 + 18_000
    assert total.completion_tokens == 10_000 + 1_800
    assert total.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)
    # 190 requests are sent, 60 at once, then 60 a minute.
    assert (total.duration_s, total.bound_by) == (130, "requests per minute")


@pytest.mark.parametrize(
    ("context", "budget", "prompts", "rows", "overflow", "tokens", "largest"),
    [
        (None, 64, [10, 500, 20], 3, 0, 530, 500),
        (100, 64, [10, 36, 37, 500], 4, 2, 46, 500),  # 36 + 64 fits exactly; 37 does not
        (100, 200, [1, 2], 2, 2, 0, 2),  # the budget alone is over the window
        (100, 64, [], 0, 0, 0, 0),
    ],
)
def test_prompts_are_counted_against_the_context(
    context: int | None,
    budget: int,
    prompts: list[int],
    rows: int,
    overflow: int,
    tokens: int,
    largest: int,
) -> None:
    tally = PromptTally(None if context is None else ContextWindow(context, budget))
    tally.add(prompts[:1])
    tally.add(prompts[1:])
    assert (tally.rows, tally.overflow_rows, tally.prompt_tokens) == (rows, overflow, tokens)
    assert tally.largest_prompt == largest
    fitting = rows - overflow
    assert tally.average_prompt_tokens == (tokens / fitting if fitting else 0.0)


def test_answers_not_known_yet_count_in_full_but_do_not_overflow() -> None:
    tally = PromptTally(ContextWindow(100, 64))
    # 36 fits on its own (36 + 64 = 100) and counts with the 10 unknown tokens; 37 cannot fit.
    tally.add([36, 37], unknown=10)
    assert (tally.rows, tally.overflow_rows, tally.prompt_tokens, tally.largest_prompt) == (
        2,
        1,
        46,
        47,
    )


def test_a_row_that_cannot_fit_is_a_reusable_error_row() -> None:
    result = ContextWindow(120, 64).overflow(300)
    assert (result.status, result.error_kind, result.attempts) == ("error", "context_overflow", 0)
    assert result.usage.prompt_tokens == 0 and result.cost_usd == 0
    assert result.error == (
        "prompt of ~300 tokens + max_completion_tokens 64 cannot fit the model's context of "
        "120 tokens; not sent"
    )
    assert reusable(result) and not reusable(result, retry_errors=True)


@pytest.mark.parametrize(
    ("latencies", "q", "expected"),
    [
        ([0.1] * 100, 50, 0.1),
        ([0.1] * 90 + [2.0] * 10, 50, 0.1),
        ([0.1] * 90 + [2.0] * 10, 95, 2.0),
        ([0.01, 0.02, 0.5, 1.0], 99, 1.0),
    ],
)
def test_latency_percentiles_within_a_few_percent(
    latencies: list[float], q: float, expected: float
) -> None:
    histogram: dict[str, int] = {}
    for value in latencies:
        add_latency(histogram, value)
    assert percentile(histogram, q) == pytest.approx(expected, rel=0.07)
    assert percentile({}, q) is None


def committed_chunk(
    name: str, error: str, tokens: tuple[int, int], cost_usd: float, **counts: int
) -> ChunkSummary:
    """A committed chunk with ``counts`` of rows and requests that met one bad request."""
    prompt, completion = tokens
    chunk = ChunkSummary(
        chunk_id=name,
        label=f"chunk-{name}",
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost_usd,
        committed=True,
        **counts,  # type: ignore[arg-type]
    )
    chunk.add_error("http_400", error)
    return chunk


def test_chunk_summaries_merge_into_the_job() -> None:
    a = committed_chunk("a", "bad request", (10, 5), 0.5, rows=3, ok=2, failed=1, requests=3)
    b = committed_chunk("b", "another", (4, 2), 0.25, rows=2, ok=2, requests=1, reused=1)
    skipped = ChunkSummary(chunk_id="c", label="chunk-c", rows=5, committed=True, skipped=True)
    job = merge("job", "out", [a, b, skipped])
    assert (job.rows, job.ok, job.failed, job.requests, job.reused) == (10, 4, 1, 4, 1)
    assert (job.prompt_tokens, job.completion_tokens, job.cost_usd) == (14, 7, 0.75)
    assert job.errors == {"http_400": [2, "bad request"]}
    assert (job.chunks, job.chunks_committed, job.chunks_skipped) == (3, 3, 1)
