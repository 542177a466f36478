"""Spending caps that hold exactly: reserve the worst case before sending, settle to the actual.

A :class:`Budget` is the same arithmetic as the rate controller's token bucket, applied to
money and tokens that never refill: every request reserves its worst case (its prompt tokens
plus ``max_completion_tokens``, at the model's prices) before it is sent, and when it returns
the reservation is settled down to what the attempt actually cost. What is spent plus what is
reserved never passes the cap, so no number of requests in flight can spend more than it.

Money is kept as integer picodollars (:data:`UNITS_PER_USD` units per US dollar): a price of
$0.35 per million tokens is exactly 350,000 units per token, sums never drift, and a cap of
$5.00 is reached to the unit, not to the float. A price with more decimals than that is rounded
up and a cap rounded down, so the arithmetic can only err on the side of spending less.

Everything here is pure (no clock, no IO, no event loop): the async admission that waits for
reservations to settle is :mod:`enrich.engine.spending`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from enrich.errors import BudgetReached

__all__ = [
    "UNITS_PER_USD",
    "Budget",
    "Charge",
    "Rates",
    "format_usd",
    "usd_units",
]

#: Budget units in one US dollar: picodollars, so that a per-million price is a whole number.
UNITS_PER_USD = 10**12
_PER_TOKEN = UNITS_PER_USD // 10**6  # units per token for a price of $1 per million tokens


def usd_units(usd: float | str | Decimal, *, round_up: bool = False) -> int:
    """``usd`` dollars as whole units, rounded down (a cap) or up (``round_up``: a price).

    A float is read as the decimal it prints as (``0.35`` is 0.35, not 0.34999...).
    """
    amount = Decimal(repr(usd)) if isinstance(usd, float) else Decimal(usd)
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not an amount of dollars: {usd!r}")
    rounding = ROUND_CEILING if round_up else ROUND_FLOOR
    return int((amount * UNITS_PER_USD).to_integral_value(rounding=rounding))


def format_usd(units: int) -> str:
    """Units as dollars for a person: cents when it is a dollar or more (``$12.35``), else
    down to a millionth of a dollar with trailing zeros dropped (``$0.0042``); rounded down."""
    usd = Decimal(units) / UNITS_PER_USD
    if usd >= 1:
        return f"${usd.quantize(Decimal('0.01'), rounding=ROUND_FLOOR):,}"
    text = f"{usd.quantize(Decimal('0.000001'), rounding=ROUND_FLOOR):f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


@dataclass(frozen=True, slots=True)
class Rates:
    """Prices in units per token: ``prompt`` (input) and ``completion`` (output)."""

    prompt: int
    completion: int

    @classmethod
    def per_million(cls, input_usd: float, output_usd: float) -> Rates:
        """Rates from dollars per million prompt and completion tokens (rounded up)."""
        return cls(_per_token(input_usd), _per_token(output_usd))

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        """What a request of these token counts costs, in units."""
        return prompt_tokens * self.prompt + completion_tokens * self.completion


def _per_token(usd_per_million: float) -> int:
    # $1 per million tokens is 10**6 units per token; a finer price is rounded up.
    return -(-usd_units(usd_per_million, round_up=True) // 10**6)


@dataclass(frozen=True, slots=True)
class Charge:
    """What a request costs or may cost: ``units`` of money and ``tokens``."""

    units: int
    tokens: int

    @classmethod
    def of(cls, rates: Rates, prompt_tokens: int, completion_tokens: int) -> Charge:
        """The charge of a request with these token counts at ``rates``."""
        return cls(rates.cost(prompt_tokens, completion_tokens), prompt_tokens + completion_tokens)


NOTHING = Charge(0, 0)


class Budget:
    """A cap on money (``max_units``) and tokens (``max_tokens``); ``None``: no cap on that.

    ``spent`` is what settled requests cost (and, for an attempt that brought no usage back,
    its whole reservation); ``reserved`` is held by requests in flight. The invariant
    ``spent + reserved <= cap`` holds after every call, unless a request cost more than it
    reserved (the worst case was not one): that overshoot is counted, never hidden.

    ``label`` names the cap in the message of :class:`~enrich.errors.BudgetReached`
    (``budget``, ``monthly budget``). A run's share of a larger cap (a month's) says that cap
    instead: ``shown_units`` is the cap in the message, ``offset`` what was spent against it
    before this budget started, so the message says the whole of it.
    """

    def __init__(
        self,
        max_units: int | None = None,
        max_tokens: int | None = None,
        *,
        label: str = "budget",
        offset: Charge = NOTHING,
        shown_units: int | None = None,
    ) -> None:
        if (max_units is not None and max_units < 0) or (max_tokens is not None and max_tokens < 0):
            raise ValueError("a budget cannot be negative")
        self.max_units = max_units
        self.max_tokens = max_tokens
        self.label = label
        self.offset = offset
        self.shown_units = max_units if shown_units is None else shown_units
        self.spent = NOTHING
        self.reserved = NOTHING

    def _room(self, held: Charge) -> tuple[float, float]:
        """What is left under each cap once ``held`` is counted (``inf``: no cap)."""
        units = math.inf if self.max_units is None else self.max_units - held.units
        tokens = math.inf if self.max_tokens is None else self.max_tokens - held.tokens
        return units, tokens

    @property
    def remaining(self) -> tuple[float, float]:
        """``(units, tokens)`` still free: neither spent nor reserved (``inf``: no cap)."""
        return self._room(_plus(self.spent, self.reserved))

    def fits(self, charge: Charge) -> bool:
        """Whether ``charge`` can be reserved now."""
        units, tokens = self.remaining
        return charge.units <= units and charge.tokens <= tokens

    def hopeless(self, charge: Charge) -> bool:
        """Whether ``charge`` would not fit even if every reservation were refunded in full:
        waiting for the requests in flight cannot make room for it."""
        units, tokens = self._room(self.spent)
        return charge.units > units or charge.tokens > tokens

    def reserve(self, charge: Charge) -> bool:
        """Hold ``charge`` if it fits (True); leave everything as it is otherwise (False)."""
        if not self.fits(charge):
            return False
        self.reserved = _plus(self.reserved, charge)
        return True

    def settle(self, held: Charge, actual: Charge) -> None:
        """A request that reserved ``held`` returned having cost ``actual``: the difference
        is refunded (``actual`` may be ``held`` itself: nothing is refunded)."""
        self.reserved = Charge(self.reserved.units - held.units, self.reserved.tokens - held.tokens)
        self.spent = _plus(self.spent, actual)

    def reached(self, charge: Charge) -> BudgetReached:
        """The error that stops a run whose next request (``charge``) is hopeless: which cap
        it would pass, and what was spent against that cap."""
        whole = _plus(self.offset, self.spent)
        units, _ = self._room(self.spent)
        if self.max_units is not None and charge.units > units:
            return BudgetReached(
                f"{self.label} of {format_usd(self.shown_units or 0)} reached after "
                f"{format_usd(whole.units)}; rerun with a higher budget to resume"
            )
        return BudgetReached(
            f"token {self.label} of {self.max_tokens or 0:,} reached after {whole.tokens:,} "
            f"tokens ({format_usd(whole.units)}); rerun with a higher budget to resume"
        )


def _plus(a: Charge, b: Charge) -> Charge:
    return Charge(a.units + b.units, a.tokens + b.tokens)
