"""Admission by the run's budget: each attempt reserves its worst case before it is sent.

:class:`Spending` wraps a pure :class:`~enrich.budget.Budget` for the requests of one run. The
sender calls :meth:`Spending.reserve` after the rate controller admitted an attempt and just
before sending it (so only attempts about to go out hold money, at most one per request in
flight), and :meth:`Spending.settle` when it returns:

* a completion settles at its usage (prompt and completion tokens at the run's prices);
* an error the server answered with a status (a 400, a 429, a 503) cost nothing: refunded;
* an attempt that brought no answer back (a timeout, a dropped connection, a cut stream, a
  cancelled request) may have been billed: its worst case stays charged. That is what makes
  "never more than the budget" hold whatever the network does.

When an attempt does not fit, it waits for the attempts in flight to settle (their refunds may
make room). When it could not fit even if they were all refunded, the budget is reached: that
attempt and every later one raise :class:`~enrich.errors.BudgetReached`, and the run stops the
way a spent daily quota stops it (see :func:`enrich.run.drive`).
"""

from __future__ import annotations

import asyncio

from enrich.budget import Budget, Charge, Rates
from enrich.errors import BudgetReached

__all__ = ["Spending"]


class Spending:
    """The run's budget, as the sender's admission: reserve, settle, stop once reached."""

    def __init__(self, budget: Budget, rates: Rates) -> None:
        self.budget = budget
        self.rates = rates
        #: Why the budget stopped the run, once it has: every later reserve raises it.
        self.reached_error: BudgetReached | None = None
        self._settled = asyncio.Event()

    def worst_case(self, prompt_tokens: int, max_completion_tokens: int) -> Charge:
        """The most an attempt can cost: its prompt and every completion token it may get."""
        return Charge.of(self.rates, prompt_tokens, max_completion_tokens)

    def actual(self, prompt_tokens: int, completion_tokens: int) -> Charge:
        """What an attempt that reported this usage cost."""
        return Charge.of(self.rates, prompt_tokens, completion_tokens)

    async def reserve(self, charge: Charge) -> Charge:
        """Hold ``charge`` for one attempt, waiting for refunds when it does not fit yet.

        Raises:
            BudgetReached: it cannot fit whatever the attempts in flight turn out to cost.
        """
        while True:
            if self.reached_error is not None:
                raise self.reached_error
            if self.budget.reserve(charge):
                return charge
            if self.budget.hopeless(charge):
                self.reached_error = self.budget.reached(charge)
                self._wake()  # the waiters stop too
                raise self.reached_error
            await self._settled.wait()

    def settle(self, held: Charge, actual: Charge | None) -> None:
        """An attempt that held ``held`` returned: ``actual`` is what it cost, ``None`` when
        it brought no usage back (its worst case stays charged)."""
        self.budget.settle(held, held if actual is None else actual)
        self._wake()

    def _wake(self) -> None:
        # Every waiter looks again; an Event per round, so none misses a settle.
        self._settled.set()
        self._settled = asyncio.Event()
