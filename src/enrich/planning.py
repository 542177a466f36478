"""Chunk planning and cost estimates: pure functions of the sources and the job.

A chunk is a contiguous ``[start, stop)`` slice of one source file. The same sources, chunk
size and job fingerprint always give the same chunks with the same ids, so a rerun finds the
chunks it has already committed.

The chunk size, unless the config sets one, is chosen from the job's limits alone
(:func:`chunk_size`): never from the input, so an input that grows (a glob gaining files) keeps
the chunks, and the ids, of the rows it had.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from enrich.config import JobConfig
from enrich.hashing import chunk_id, slot_id

#: The sizes an automatic chunk takes: few, so that a small change of limits rarely changes it
#: (a new size re-commits a dataset's chunks, reusing every result). From 100 rows, so that a
#: job never has more than one Prefect task run per 100 rows; to 10,000, so that the chunks in
#: flight stay small in memory.
NICE_CHUNK_ROWS = (100, 200, 500, 1000, 2000, 5000, 10_000)
#: How long an automatic chunk should take: long enough that a task run's cost disappears in
#: it, short enough that progress moves and a lost chunk is little work.
CHUNK_SECONDS = 30.0
#: Guesses for what the config cannot say. A request's latency, when only the concurrency
#: bounds the rate: time to the first token plus the whole completion budget at a modest
#: output speed (Cerebras streams thousands of tokens a second; a slower endpoint only makes
#: chunks take longer). A prompt's size in tokens, against a tokens-per-minute limit.
FIRST_TOKEN_S = 0.2
OUTPUT_TOKENS_PER_S = 1000.0
PROMPT_TOKENS = 500


class SourceLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def num_rows(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """One unit of work: rows ``[start, stop)`` of ``sources[source_index]``."""

    chunk_id: str
    slot_id: str
    source_index: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def label(self) -> str:
        """A human-readable name for logs and Prefect task runs."""
        return f"chunk-{self.source_index:03d}-{self.start:09d}"


def plan_chunks(
    sources: Sequence[SourceLike], rows_per_chunk: int, fingerprint: str
) -> list[ChunkSpec]:
    """Split every source into chunks of at most ``rows_per_chunk`` rows, in source order."""
    if rows_per_chunk < 1:
        raise ValueError("rows_per_chunk must be at least 1")
    chunks: list[ChunkSpec] = []
    for index, source in enumerate(sources):
        for start in range(0, source.num_rows, rows_per_chunk):
            stop = min(start + rows_per_chunk, source.num_rows)
            slot = slot_id(source.key, start, stop)
            chunk = chunk_id(slot, source.version, fingerprint)
            chunks.append(ChunkSpec(chunk, slot, index, start, stop))
    return chunks


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a job is expected to cost before anything is spent."""

    rows: int
    chunks: int
    pending_rows: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    duration_s: float | None
    bound_by: str
    #: Pending rows that cannot fit the model's context: never sent, not counted above.
    overflow_rows: int = 0
    #: What completion tokens were counted at (the worst case, or observed lengths).
    completion_basis: str = "max_completion_tokens per row (the worst case)"


def estimate(
    *,
    rows: int,
    chunks: int,
    pending_rows: int,
    avg_prompt_tokens: float,
    max_completion_tokens: int,
    input_price: float,
    output_price: float,
    requests_per_minute: float | None,
    tokens_per_minute: float | None,
    max_concurrency: int,
    seconds_per_request: float | None = None,
    overflow_rows: int = 0,
    completion_tokens_per_row: float | None = None,
) -> Estimate:
    """Upper-bound tokens and cost of the pending rows, and how long the limits make it take.

    ``overflow_rows`` of the pending rows cannot fit the model's context: they are never sent
    and count for nothing; ``avg_prompt_tokens`` is the average of the others. Completion
    tokens are counted at ``max_completion_tokens`` (the most a row can cost) unless
    ``completion_tokens_per_row`` gives lengths observed in a sample run (which the token quota
    refunds down to, as Cerebras does, after reserving ``max_completion_tokens``). Duration
    is the slowest of the request quota, the token quota and, when a per-request latency is
    given, the concurrency cap. Buckets are full at start, as the provider's are.
    """
    sent = max(0, pending_rows - overflow_rows)
    prompt = round(avg_prompt_tokens * sent)
    if completion_tokens_per_row is None:
        completion = max_completion_tokens * sent
        basis = f"max_completion_tokens ({max_completion_tokens:,}) per row, the worst case"
    else:
        completion = round(completion_tokens_per_row * sent)
        basis = f"{completion_tokens_per_row:,.1f} per row, as observed in a sample run"
    cost = (prompt * input_price + completion * output_price) / 1_000_000
    duration, bound_by = _duration(
        sent, prompt + completion, requests_per_minute, tokens_per_minute, max_concurrency,
        seconds_per_request,
    )  # fmt: skip
    figures = (rows, chunks, pending_rows, prompt, completion, cost)
    return Estimate(*figures, duration, bound_by, overflow_rows, basis)


def _duration(
    requests: int,
    tokens: int,
    requests_per_minute: float | None,
    tokens_per_minute: float | None,
    max_concurrency: int,
    seconds_per_request: float | None,
) -> tuple[int | None, str]:
    """Seconds the slowest limit makes ``requests`` of ``tokens`` in all take, and which."""
    bounds: dict[str, float] = {}
    if requests_per_minute:
        # Buckets start full: the first minute's quota goes out at once.
        bounds["requests per minute"] = (
            max(0, requests - requests_per_minute) / requests_per_minute * 60
        )
    if tokens_per_minute:
        # Each request reserves prompt + max_completion_tokens and is refunded down to its
        # usage when it returns: over minutes the bucket drains at the tokens used.
        bounds["tokens per minute"] = max(0, tokens - tokens_per_minute) / tokens_per_minute * 60
    if seconds_per_request:
        bounds["concurrency"] = requests * seconds_per_request / max(1, max_concurrency)
    if not bounds:
        return None, "unknown"
    bound_by = max(bounds, key=lambda k: bounds[k])
    return math.ceil(bounds[bound_by]), bound_by


def combine_steps(
    steps: Sequence[Estimate],
    *,
    requests_per_minute: float | None,
    tokens_per_minute: float | None,
    max_concurrency: int,
    seconds_per_request: float | None = None,
) -> Estimate:
    """The estimate of a job whose rows each make one request per step (``steps``, each
    estimated alone): tokens and cost add up, and the limits pace every step's requests.

    ``pending_rows`` and ``overflow_rows`` are the steps' requests (sent or not) added up.
    """
    first = steps[0]
    requests = sum(s.pending_rows - s.overflow_rows for s in steps)
    prompt = sum(s.prompt_tokens for s in steps)
    completion = sum(s.completion_tokens for s in steps)
    duration, bound_by = _duration(
        requests, prompt + completion, requests_per_minute, tokens_per_minute, max_concurrency,
        seconds_per_request,
    )  # fmt: skip
    return Estimate(
        rows=first.rows,
        chunks=first.chunks,
        pending_rows=sum(s.pending_rows for s in steps),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=sum(s.cost_usd for s in steps),
        duration_s=duration,
        bound_by=bound_by,
        overflow_rows=sum(s.overflow_rows for s in steps),
        completion_basis="each step's max_completion_tokens per row, the worst case",
    )


@dataclass(frozen=True, slots=True)
class ChunkSize:
    """Rows per chunk, and why (for ``enrich plan``)."""

    rows: int
    automatic: bool
    reason: str


def automatic_chunk_size(
    *,
    requests_per_minute: float | None,
    tokens_per_minute: float | None,
    max_completion_tokens: Sequence[int],
    max_concurrency: int,
    chunks_in_flight: int,
) -> ChunkSize:
    """The chunk size that makes a chunk take about :data:`CHUNK_SECONDS` at the job's limits.

    ``max_completion_tokens`` has one budget per request a row makes (one per step). The
    job's pace in rows is the slowest of its requests per minute, its tokens per minute (each
    request counted at :data:`PROMPT_TOKENS` + its budget, as the provider reserves them) and
    its concurrency (each request holding a slot for :data:`FIRST_TOKEN_S` plus its budget at
    :data:`OUTPUT_TOKENS_PER_S`); the chunks in flight share it. The size is the nearest of
    :data:`NICE_CHUNK_ROWS` (on a log scale), clamped to them.
    """
    budgets = list(max_completion_tokens) or [0]
    slot_seconds = sum(FIRST_TOKEN_S + b / OUTPUT_TOKENS_PER_S for b in budgets)
    rates = {"concurrency": max_concurrency / slot_seconds}
    if requests_per_minute:
        rates["requests per minute"] = requests_per_minute / 60 / len(budgets)
    if tokens_per_minute:
        reserved = sum(PROMPT_TOKENS + b for b in budgets)
        rates["tokens per minute"] = tokens_per_minute / 60 / reserved
    bound = min(rates, key=lambda k: rates[k])
    per_chunk = rates[bound] / chunks_in_flight
    ideal = per_chunk * CHUNK_SECONDS
    rows = min(NICE_CHUNK_ROWS, key=lambda n: abs(math.log(n / ideal)))
    reason = (
        f"automatic: ~{rates[bound]:.3g} rows/s (bound by {bound}) over {chunks_in_flight} "
        f"chunks in flight, ~{rows / per_chunk:.0f} s a chunk"
    )
    return ChunkSize(rows, True, reason)


def completion_budgets(config: JobConfig) -> list[int]:
    """``max_completion_tokens`` of each request a row makes: the prompt's, or each step's."""
    if not config.steps:
        return [config.params.max_completion_tokens]
    return [
        s.params.max_completion_tokens
        if s.params is not None and "max_completion_tokens" in s.params.model_fields_set
        else config.params.max_completion_tokens
        for s in config.steps
    ]


def chunk_size(config: JobConfig) -> ChunkSize:
    """The job's rows per chunk: ``execution.rows_per_chunk``, else :func:`automatic_chunk_size`."""
    ex = config.execution
    if ex.rows_per_chunk is not None:
        return ChunkSize(ex.rows_per_chunk, False, "execution.rows_per_chunk")
    return automatic_chunk_size(
        requests_per_minute=ex.requests_per_minute,
        tokens_per_minute=ex.tokens_per_minute,
        max_completion_tokens=completion_budgets(config),
        max_concurrency=ex.max_concurrency,
        chunks_in_flight=ex.chunks_in_flight,
    )
