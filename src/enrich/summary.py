"""Run statistics that merge across chunks: counts, tokens, cost, latency percentiles, errors.

Chunk summaries are small and JSON-friendly so they can be stored next to the data (the chunk
commit record) and returned from Prefect tasks. Latencies are kept as a log-bucket histogram,
so merging chunks is a sum and percentiles stay within a few percent of the exact value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

_BUCKETS_PER_DECADE = 20
_MIN_LATENCY = 1e-4


def _bucket(seconds: float) -> int:
    return max(0, int(math.log10(max(seconds, _MIN_LATENCY) / _MIN_LATENCY) * _BUCKETS_PER_DECADE))


def _bucket_value(index: int) -> float:
    """The geometric middle of a bucket."""
    return float(_MIN_LATENCY * 10 ** ((index + 0.5) / _BUCKETS_PER_DECADE))


def add_latency(histogram: dict[str, int], seconds: float) -> None:
    key = str(_bucket(seconds))
    histogram[key] = histogram.get(key, 0) + 1


def percentile(histogram: Mapping[str, int], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of a latency histogram, or None when it is empty."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = q / 100 * total
    seen = 0
    for key in sorted(histogram, key=int):
        seen += histogram[key]
        if seen >= rank:
            return _bucket_value(int(key))
    return _bucket_value(max(int(k) for k in histogram))


@dataclass(kw_only=True)
class Tally:
    """What chunks add up to: row outcomes, requests, tokens, cost, latencies and errors.

    ``pending`` rows failed transiently and were not committed; ``reused`` rows were filled
    from a result paid for earlier (by another row, another chunk or an earlier run).
    """

    ok: int = 0
    failed: int = 0
    pending: int = 0
    requests: int = 0
    attempts: int = 0
    reused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    latency: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[Any]] = field(default_factory=dict)
    #: A ``steps:`` job's figures per step (:data:`STEP_FIGURES`), by step name.
    steps: dict[str, dict[str, float]] = field(default_factory=dict)

    def add_error(self, kind: str, message: str, count: int = 1) -> None:
        """Count ``count`` rows of error ``kind``; the first message seen is its sample."""
        entry = self.errors.setdefault(kind, [0, message])
        entry[0] += count

    def add_tally(self, other: Tally) -> None:
        """Add ``other``'s figures to these."""
        for name in TALLY_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost_usd += other.cost_usd
        for key, count in other.latency.items():
            self.latency[key] = self.latency.get(key, 0) + count
        for kind, (count, sample) in other.errors.items():
            self.add_error(kind, sample, count)
        for name, figures in other.steps.items():
            mine = self.steps.setdefault(name, dict.fromkeys(STEP_FIGURES, 0))
            for key, value in figures.items():
                mine[key] = mine.get(key, 0) + value


#: What a ``steps:`` job reports per step.
STEP_FIGURES = (
    "requests",
    "ok",
    "failed",
    "skipped",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_usd",
)

#: The integer figures of a :class:`Tally`, which add up across chunks.
TALLY_COUNTS: tuple[str, ...] = tuple(f.name for f in fields(Tally) if f.type in (int, "int"))


@dataclass(kw_only=True)
class ChunkSummary(Tally):
    """What one chunk did."""

    chunk_id: str
    label: str
    rows: int = 0
    elapsed_s: float = 0.0
    committed: bool = False
    skipped: bool = False
    part: str | None = None


@dataclass(kw_only=True)
class JobSummary(Tally):
    """The whole run: what was committed, what it cost, how fast it went."""

    job: str
    output: str
    chunks: int = 0
    chunks_committed: int = 0
    chunks_skipped: int = 0
    rows: int = 0
    elapsed_s: float = 0.0
    complete: bool = False
    message: str = ""
    #: The run's budget: its cap (``budget.max_usd``), the worst-case forecast of what was
    #: pending when it started, and what the budget counted as spent (every billed attempt,
    #: an attempt that brought no usage back at its worst case). None: no budget was set.
    budget_usd: float | None = None
    forecast_usd: float | None = None
    spent_usd: float | None = None
    #: Why the run stopped before the end without raising: ``budget`` when its budget was
    #: reached mid-run (the chunks done are committed, the rest left for a rerun). None: it
    #: ran to the end, or stopped by raising (a spent quota, too many errors).
    stopped: str | None = None

    @property
    def rows_per_s(self) -> float:
        done = self.ok + self.failed
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add(self, chunk: ChunkSummary) -> None:
        """Fold one chunk in (skipped chunks count as committed rows, not as work)."""
        self.chunks_committed += chunk.committed
        self.chunks_skipped += chunk.skipped
        if not chunk.skipped:
            self.add_tally(chunk)

    def table(self) -> list[dict[str, Any]]:
        """One row of figures, the shape of a Prefect table artifact."""
        p = {q: percentile(self.latency, q) for q in (50, 95, 99)}
        return [
            {
                "job": self.job,
                "output": self.output,
                "rows": self.rows,
                "rows_ok": self.ok,
                "rows_failed": self.failed,
                "rows_pending": self.pending,
                "requests": self.requests,
                "reused": self.reused,
                "tokens_in": self.prompt_tokens,
                "tokens_out": self.completion_tokens,
                "reasoning_tokens": self.reasoning_tokens,
                "cost_usd": round(self.cost_usd, 6),
                "rows_per_s": round(self.rows_per_s, 1),
                "elapsed_s": round(self.elapsed_s, 2),
                "latency_p50_s": _round(p[50]),
                "latency_p95_s": _round(p[95]),
                "latency_p99_s": _round(p[99]),
                "complete": self.complete,
                **self._budget_figures(),
            }
        ]

    def _budget_figures(self) -> dict[str, Any]:
        if self.spent_usd is None:
            return {}
        return {
            "budget_usd": self.budget_usd,
            "forecast_usd": None if self.forecast_usd is None else round(self.forecast_usd, 6),
            "spent_usd": round(self.spent_usd, 6),
        }

    def markdown(self) -> str:
        row = self.table()[0]
        lines = [
            f"# Enrichment: {self.job}",
            "",
            f"Output: `{self.output}`",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        skip = ("job", "output", *self._budget_figures())  # the budget has its own section
        lines += [f"| {k} | {v} |" for k, v in row.items() if k not in skip]
        if self.steps:
            lines += ["", "## By step", "", "| " + " | ".join(["step", *STEP_FIGURES]) + " |"]
            lines.append("|---" * (len(STEP_FIGURES) + 1) + "|")
            for name, figures in self.steps.items():
                cells = [_cell(k, figures.get(k, 0)) for k in STEP_FIGURES]
                lines.append("| " + " | ".join([name, *cells]) + " |")
        if self.spent_usd is not None:
            lines += ["", "## Budget", "", "| | USD |", "|---|---|"]
            lines += [
                f"| {name} | {_usd(value)} |"
                for name, value in [
                    ("budget (budget.max_usd)", self.budget_usd),
                    ("forecast, worst case", self.forecast_usd),
                    ("spent: every billed attempt", self.spent_usd),
                ]
            ]
        if self.errors:
            lines += ["", "## Errors", "", "| kind | rows | sample |", "|---|---|---|"]
            for kind, (count, sample) in sorted(self.errors.items()):
                lines.append(f"| {kind} | {count} | {str(sample).replace('|', '/')[:200]} |")
        if self.message:
            lines += ["", self.message]
        return "\n".join(lines)


def _cell(key: str, value: float) -> str:
    return f"{value:.6f}" if key == "cost_usd" else str(int(value))


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def merge(job: str, output: str, chunks: Iterable[ChunkSummary]) -> JobSummary:
    summary = JobSummary(job=job, output=output)
    for chunk in chunks:
        summary.chunks += 1
        summary.rows += chunk.rows
        summary.add(chunk)
    return summary
