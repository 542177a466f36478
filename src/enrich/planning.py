"""Chunk planning and cost estimates: pure functions of the sources and the job.

A chunk is a contiguous ``[start, stop)`` slice of one source file. The same sources, chunk
size and job fingerprint always give the same chunks with the same ids, so a rerun finds the
chunks it has already committed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from enrich.hashing import chunk_id, slot_id


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
) -> Estimate:
    """Upper-bound tokens and cost of the pending rows, and how long the limits make it take.

    Completion tokens are counted at ``max_completion_tokens`` (the most a row can cost);
    duration is the slowest of the request quota, the token quota (which reserves prompt +
    ``max_completion_tokens`` per request, as Cerebras does) and, when a per-request latency is
    given, the concurrency cap. Buckets are full at start, as the provider's are.
    """
    prompt = round(avg_prompt_tokens * pending_rows)
    completion = max_completion_tokens * pending_rows
    cost = (prompt * input_price + completion * output_price) / 1_000_000
    bounds: dict[str, float] = {}
    if requests_per_minute:
        # Buckets start full: the first minute's quota goes out at once.
        bounds["requests per minute"] = (
            max(0, pending_rows - requests_per_minute) / requests_per_minute * 60
        )
    if tokens_per_minute:
        spent = prompt + completion - tokens_per_minute
        bounds["tokens per minute"] = max(0, spent) / tokens_per_minute * 60
    if seconds_per_request:
        bounds["concurrency"] = pending_rows * seconds_per_request / max(1, max_concurrency)
    if not bounds:
        return Estimate(rows, chunks, pending_rows, prompt, completion, cost, None, "unknown")
    bound_by = max(bounds, key=lambda k: bounds[k])
    duration = bounds[bound_by]
    return Estimate(
        rows, chunks, pending_rows, prompt, completion, cost, math.ceil(duration), bound_by
    )
