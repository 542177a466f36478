"""What one variant's sampled rows say, all pure: rates, tokens, cost, latency, fields.

The input is the sampled rows as a part holds them (:func:`enrich.results.output_table` or
:func:`enrich.steps.table.steps_table`): the row's totals (``status``, ``error_kind``, token
columns, ``cost_usd``, ``latency_s``) and the typed columns. Figures per row divide by the
sampled rows, each request counted once: a row that shares another's request costs nothing,
as in the committed dataset. Latency percentiles are the nearest rank of the rows' latencies.

:func:`project` scales them to the full run: every row at the sample's cost per row, the rows
still to send (those neither committed nor sampled) at the same, and a duration at the job's
limits from :func:`enrich.planning.estimate` with the completion lengths observed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from enrich.planning import estimate

__all__ = [
    "FieldRef",
    "Figures",
    "Projection",
    "RunShape",
    "distribution",
    "measure",
    "percentile",
    "project",
]

#: The most values a distribution lists; the rest are summed as "(other)".
TOP_VALUES = 8
#: Numeric fields with more distinct values than this are shown in bins.
NUMERIC_BINS = 6


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A typed field: its name in reports (``sentiment``, ``triage.sentiment``), its column."""

    label: str
    column: str


@dataclass(frozen=True, slots=True)
class RunShape:
    """What the full run would be: its rows, those still to send, its limits and budgets."""

    rows: int
    rows_to_send: int
    max_completion_tokens: int
    requests_per_minute: float | None
    tokens_per_minute: float | None
    max_concurrency: int


@dataclass(frozen=True, slots=True)
class Projection:
    """The full run at the sample's figures per row."""

    rows: int
    cost_usd: float
    rows_to_send: int
    cost_to_send_usd: float
    tokens_to_send: int
    duration_s: float | None
    bound_by: str


@dataclass(slots=True)
class Figures:
    """One variant on the sample."""

    label: str
    model: str
    rows: int
    ok: int
    errors: int
    invalid: int
    error_kinds: dict[str, int]
    requests: int
    reused: int
    prompt_tokens_per_row: float
    completion_tokens_per_row: float
    reasoning_tokens_per_row: float
    cost_per_row_usd: float
    latency_s: dict[str, float | None]
    requests_per_row: float
    distributions: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    projection: Projection | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.rows if self.rows else 0.0

    @property
    def invalid_rate(self) -> float:
        return self.invalid / self.rows if self.rows else 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def distribution(values: Sequence[Any]) -> list[tuple[str, int]]:
    """``(value, rows)`` of a field's values, most frequent first (ties by value).

    Lists count each item (a row with topics ``[price, quality]`` counts once for each);
    ``None`` (an error row, a null) is ``(none)``; numbers with many distinct values fall in
    :data:`NUMERIC_BINS` equal bins; beyond :data:`TOP_VALUES` values the rest is ``(other)``.
    """
    flat: list[Any] = []
    for v in values:
        flat.extend(v if isinstance(v, list) else [v])
    present = [v for v in flat if v is not None]
    missing = len(flat) - len(present)
    numeric = [v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numeric and len(numeric) == len(present) and len(set(numeric)) > TOP_VALUES:
        low, high = min(numeric), max(numeric)
        width = (high - low) / NUMERIC_BINS or 1
        bins: Counter[int] = Counter(min(int((v - low) / width), NUMERIC_BINS - 1) for v in numeric)
        counted = [
            (f"{low + b * width:.3g}–{low + (b + 1) * width:.3g}", bins[b])
            for b in range(NUMERIC_BINS)
        ]
    else:
        counts = Counter(_text(v) for v in present)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        counted = ranked[:TOP_VALUES]
        rest = sum(c for _, c in ranked[TOP_VALUES:])
        if rest:
            counted.append(("(other)", rest))
    if missing:
        counted.append(("(none)", missing))
    return counted


def _column(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist() if name in table.column_names else []


def measure(
    label: str, model: str, table: pa.Table, fields: Sequence[FieldRef], *, requests: int
) -> Figures:
    """The figures of one variant's sampled rows (``requests``: how many it sent)."""
    rows = table.num_rows
    status = _column(table, "status")
    kinds = Counter(
        k for s, k in zip(status, _column(table, "error_kind"), strict=True) if s != "ok"
    )
    kind_columns = [c for c in table.column_names if c == "error_kind" or c.endswith("_error_kind")]
    invalid = sum(
        any(k is not None and k.startswith("invalid_output") for k in row)
        for row in zip(*(_column(table, c) for c in kind_columns), strict=True)
    )
    hashes = [c for c in table.column_names if c == "request_hash" or c.endswith("_request_hash")]
    asked = sum(h is not None for c in hashes for h in _column(table, c))
    reused = sum(a == 0 for a in _column(table, "attempts"))

    def per_row(name: str) -> float:
        return sum(v or 0 for v in _column(table, name)) / rows if rows else 0.0

    latencies = [v for v in _column(table, "latency_s") if v is not None]
    return Figures(
        label=label,
        model=model,
        rows=rows,
        ok=sum(s == "ok" for s in status),
        errors=sum(s != "ok" for s in status),
        invalid=invalid,
        error_kinds={str(k): c for k, c in sorted(kinds.items(), key=lambda kv: str(kv[0]))},
        requests=requests,
        reused=reused,
        prompt_tokens_per_row=per_row("prompt_tokens"),
        completion_tokens_per_row=per_row("completion_tokens"),
        reasoning_tokens_per_row=per_row("reasoning_tokens"),
        cost_per_row_usd=per_row("cost_usd"),
        latency_s={f"p{q}": percentile(latencies, q) for q in (50, 95, 99)},
        requests_per_row=asked / rows if rows else 0.0,
        distributions={f.label: distribution(_column(table, f.column)) for f in fields},
    )


def project(figures: Figures, shape: RunShape) -> Projection:
    """The full run of ``shape`` at ``figures``' cost and tokens per row; the duration at
    the run's limits, a request per step a row does not skip, each taking the sample's median
    latency."""
    per_row = figures.prompt_tokens_per_row + figures.completion_tokens_per_row
    per_request = max(1.0, figures.requests_per_row)
    requests = round(shape.rows_to_send * figures.requests_per_row)
    p50 = figures.latency_s.get("p50")  # of a row: its steps' requests one after another
    est = estimate(
        rows=shape.rows,
        chunks=0,
        pending_rows=requests,
        avg_prompt_tokens=figures.prompt_tokens_per_row / per_request,
        max_completion_tokens=shape.max_completion_tokens,
        input_price=0.0,
        output_price=0.0,
        requests_per_minute=shape.requests_per_minute,
        tokens_per_minute=shape.tokens_per_minute,
        max_concurrency=shape.max_concurrency,
        seconds_per_request=None if p50 is None else p50 / per_request,
        completion_tokens_per_row=figures.completion_tokens_per_row / per_request,
    )
    return Projection(
        rows=shape.rows,
        cost_usd=figures.cost_per_row_usd * shape.rows,
        rows_to_send=shape.rows_to_send,
        cost_to_send_usd=figures.cost_per_row_usd * shape.rows_to_send,
        tokens_to_send=round(per_row * shape.rows_to_send),
        duration_s=est.duration_s,
        bound_by=est.bound_by,
    )
