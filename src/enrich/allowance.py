"""What one run may spend: its ``budget`` section, its share of the month, the prices.

:func:`open_allowance` turns a job's ``budget`` into the :class:`~enrich.engine.spending.Spending`
its sender reserves from: ``max_usd`` and ``max_tokens`` cap the run; with ``monthly_usd`` the
run first takes its hold on the month (:mod:`enrich.ledger`) and is capped by that too.
:func:`close_allowance` settles the month with what the run spent, whatever way it ended.
:func:`job_rates` is the one place a budget takes its prices from, and :func:`forecast_usd`
the worst-case forecast a report sets beside the actual spend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

from enrich.budget import UNITS_PER_USD, Budget, Charge, Rates, format_usd, usd_units
from enrich.engine.spending import Spending
from enrich.errors import BudgetReached
from enrich.job import Job
from enrich.ledger import Ledger
from enrich.planning import ChunkSpec, estimate
from enrich.storage import Store
from enrich.tokens import count_prompt_tokens

__all__ = [
    "Allowance",
    "close_allowance",
    "forecast_usd",
    "job_rates",
    "open_allowance",
    "spent_usd",
]

log = logging.getLogger("enrich.budget")


def utc_now() -> datetime:
    return datetime.now(UTC)


def job_rates(job: Job) -> Rates:
    """The prices a budget counts at: the job's (``pricing``, else the catalogue's; dollars per
    million tokens). A job whose steps use several models counts every request at the
    dearest of their prices, so the budget holds whichever model a request goes to."""
    prices = [job.prices_for(model) for model in job.entries]
    return Rates.per_million(
        max(p.input_per_million for p in prices), max(p.output_per_million for p in prices)
    )


@dataclass
class Allowance:
    """A run's budget as its sender sees it, and the month it holds a share of (if any)."""

    spending: Spending
    ledger: Ledger | None = None
    run: str = ""

    @property
    def budget(self) -> Budget:
        return self.spending.budget


def open_allowance(
    job: Job,
    *,
    share: float = 1.0,
    holder: str | None = None,
    now: Callable[[], datetime] = utc_now,
) -> Allowance | None:
    """The run's allowance, or None when its config sets no budget.

    With ``budget.monthly_usd``, the run's hold on the month is taken here (a write under the
    ledger, in the name of ``holder``, by default the output), before anything is sent. A
    shard of a run (:mod:`enrich.shards`) is allowed its ``share`` of ``max_usd`` and
    ``max_tokens``, and holds the month in its own name.

    Raises:
        BudgetReached: the month has nothing left for this run.
    """
    spec = job.config.budget
    if spec.max_usd is None and spec.max_tokens is None and spec.monthly_usd is None:
        return None
    cap = None if spec.max_usd is None else usd_units(spec.max_usd * share)
    max_tokens = None if spec.max_tokens is None else int(spec.max_tokens * share)
    budget = Budget(cap, max_tokens)
    ledger = None
    run = holder or job.store.url
    if spec.monthly_usd is not None:
        out = job.config.output
        ledger = Ledger(Store(spec.ledger or out.path, out.storage_options), now())
        limit = usd_units(spec.monthly_usd)
        after, held = ledger.hold(run, cap, limit)
        promised = after.total_spent + sum(v for k, v in after.holds.items() if k != run)
        if held == 0:
            raise BudgetReached(
                f"monthly budget of {format_usd(limit)} reached after {format_usd(promised)}"
                f"{_held_note(after.holds, run)}; rerun with a higher budget to resume"
            )
        if cap is None or held < cap:
            budget = Budget(
                held,
                max_tokens,
                label="monthly budget",
                offset=Charge(promised, 0),
                shown_units=limit,
            )
    return Allowance(Spending(budget, job_rates(job)), ledger, run)


def _held_note(holds: dict[str, int], run: str) -> str:
    others = sum(v for k, v in holds.items() if k != run)
    return f" ({format_usd(others)} of it held by runs in progress)" if others else ""


def close_allowance(allowance: Allowance | None) -> None:
    """Settle the month with what the run spent (its hold becomes its spending)."""
    if allowance is not None and allowance.ledger is not None:
        allowance.ledger.settle(allowance.run, allowance.budget.spent.units)


def forecast_usd(job: Job, pending: list[ChunkSpec], *, sample_chunks: int = 1) -> float:
    """The worst-case cost of ``pending`` (:func:`enrich.planning.estimate`: every completion
    at ``max_completion_tokens``), prompts measured on the first ``sample_chunks`` chunks."""
    counts: list[int] = []
    for chunk, table in islice(job.iter_tables(pending), sample_chunks):
        _, _, messages = job.render(chunk, table)
        counts += [count_prompt_tokens(m) for m in messages]
    cfg = job.config
    est = estimate(
        rows=job.rows,
        chunks=len(job.chunks),
        pending_rows=sum(c.rows for c in pending),
        avg_prompt_tokens=sum(counts) / max(1, len(counts)),
        max_completion_tokens=cfg.params.max_completion_tokens,
        input_price=job.prices.input_per_million,
        output_price=job.prices.output_per_million,
        requests_per_minute=None,
        tokens_per_minute=None,
        max_concurrency=cfg.execution.max_concurrency,
    )
    return est.cost_usd


def spent_usd(budget: Budget) -> float:
    """What the budget counted as spent, in dollars (for reports)."""
    return budget.spent.units / UNITS_PER_USD
