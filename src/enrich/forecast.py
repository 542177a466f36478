"""What ``enrich plan`` says a job will cost: every step's requests, tokens, cost and the
duration at the configured limits, with the model facts and prices behind them.

A pure function of a prepared job and its prompts counted (:meth:`enrich.job.Job.
tally_prompts`): each step is estimated at its own model's prices and completion budget
(:func:`enrich.planning.estimate`), then the steps are added up and paced together
(:func:`enrich.planning.combine_steps`). Completions count at ``max_completion_tokens``, the
worst case, unless ``observed`` gives a step's completion lengths measured in a sample run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from enrich.catalogue import Prices
from enrich.context import ContextWindow, PromptTally
from enrich.job import Job
from enrich.planning import ChunkSpec, Estimate, combine_steps, estimate

__all__ = ["Forecast", "StepForecast", "forecast", "plan_rows"]


@dataclass(frozen=True, slots=True)
class StepForecast:
    """One step's share: its model, prices, context window and estimate."""

    name: str | None
    model: str
    prices: Prices
    window: ContextWindow | None
    estimate: Estimate
    #: Its prompts hold earlier steps' answers: judged empty for the context, counted at their
    #: whole budget for tokens and cost.
    reads_answers: bool = False


@dataclass(frozen=True, slots=True)
class Forecast:
    """The whole job (``total``) and each step."""

    total: Estimate
    steps: tuple[StepForecast, ...]


def forecast(
    job: Job,
    pending: Sequence[ChunkSpec],
    tallies: Sequence[PromptTally],
    *,
    observed: Mapping[str | None, float] | None = None,
) -> Forecast:
    """The forecast of ``pending`` (``tallies``: one per step, in the job's step order).

    ``observed`` maps a step's name (None for a one-prompt job) to the average completion
    tokens a sample run measured; a step it leaves out counts at its worst case.
    """
    ex = job.config.execution
    rpm, tpm, concurrency = ex.requests_per_minute, ex.tokens_per_minute, ex.max_concurrency
    steps = []
    for step, tally in zip(job.steps, tallies, strict=True):
        prices = job.prices_for(step.kind.model)
        est = estimate(
            rows=job.rows,
            chunks=len(job.chunks),
            pending_rows=tally.rows,
            avg_prompt_tokens=tally.average_prompt_tokens,
            max_completion_tokens=step.kind.max_completion_tokens,
            input_price=prices.input_per_million,
            output_price=prices.output_per_million,
            overflow_rows=tally.overflow_rows,
            completion_tokens_per_row=(observed or {}).get(step.name),
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
            max_concurrency=concurrency,
        )
        reads = bool(step.template.step_fields)
        steps.append(StepForecast(step.name, step.kind.model, prices, tally.window, est, reads))
    if len(steps) == 1:
        return Forecast(steps[0].estimate, tuple(steps))
    total = combine_steps(
        [s.estimate for s in steps],
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        max_concurrency=concurrency,
    )
    return Forecast(total, tuple(steps))


def _model(job: Job, model: str) -> str:
    entry = job.entries.get(model)
    if entry is None:
        return f"{model} (not in the catalogue)"
    facts = [entry.describe_status(date.today())]
    if entry.context_length is not None:
        facts.append(f"context {entry.context_length:,}")
    if entry.max_completion_tokens is not None:
        facts.append(f"max completion {entry.max_completion_tokens:,}")
    return f"{model} ({', '.join(facts)})"


def _overflow(step: StepForecast, what: str) -> str:
    if step.window is None:
        return "unknown: the catalogue does not give the model's context length"
    n = step.estimate.overflow_rows
    text = f"{n:,} {what} cannot fit the model's context of {step.window.context_length:,} tokens"
    if n and step.reads_answers:
        text += " even with earlier steps' answers empty"
    if n:
        text += " (error rows of kind context_overflow, never sent)"
    return text


def _cost(usd: float, prices: Sequence[Prices]) -> str:
    if not all(p.known for p in prices):
        return f"${usd:,.4f}, not counting models with no prices (set pricing.*)"
    return f"${usd:,.4f}"


def plan_rows(job: Job, pending: Sequence[ChunkSpec], plan: Forecast) -> list[tuple[str, str]]:
    """The lines of ``enrich plan``: what is read and written, the model facts and their
    source, the prices, the rows, what cannot fit, tokens, cost and duration."""
    cfg, est = job.config, plan.total
    models = list(dict.fromkeys(s.model for s in plan.steps))
    rows: list[tuple[str, str]] = [("input", cfg.input.path), ("output", job.store.url)]
    rows += [("model", _model(job, m)) for m in models]
    rows.append(("catalogue", job.catalogue.describe()))
    rows += [("prices", job.prices_for(m).describe()) for m in models]
    size = job.chunk_size
    rows += [
        ("rows", f"{est.rows:,}"),
        ("rows per chunk", f"{size.rows:,} ({size.reason})"),
        ("chunks", f"{est.chunks:,} ({len(pending):,} pending)"),
    ]
    if len(plan.steps) == 1:
        only = plan.steps[0]
        rows += [
            ("rows to send", f"{est.pending_rows - est.overflow_rows:,}"),
            ("rows that cannot fit", _overflow(only, "rows")),
        ]
    else:
        for s in plan.steps:
            e = s.estimate
            rows.append(
                (
                    f"step {s.name}",
                    f"{s.model}: {e.pending_rows - e.overflow_rows:,} requests, "
                    f"{e.prompt_tokens:,} prompt + {e.completion_tokens:,} completion tokens, "
                    f"${e.cost_usd:,.4f}; {_overflow(s, 'rows')}",
                )
            )
        rows.append(("requests to send", f"{est.pending_rows - est.overflow_rows:,}"))
    duration = (
        "unbounded by the configured limits"
        if est.duration_s is None
        else f"~{est.duration_s:,} s (bound by {est.bound_by})"
    )
    rows += [
        ("prompt tokens (est.)", f"{est.prompt_tokens:,}"),
        ("completion tokens (at most)", f"{est.completion_tokens:,} ({est.completion_basis})"),
        ("cost (at most)", _cost(est.cost_usd, [s.prices for s in plan.steps])),
        ("duration", duration),
    ]
    return rows
