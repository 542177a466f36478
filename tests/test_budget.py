"""Budgets, the arithmetic: money as whole picodollars, reserve the worst case, settle to the
actual; a month's holds across runs. Pure: no clock, no IO, no event loop (but the last few,
which wait on settles)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from enrich.budget import UNITS_PER_USD, Budget, Charge, Rates, format_usd, usd_units
from enrich.engine.spending import Spending
from enrich.errors import BudgetReached
from enrich.ledger import MonthRecord, settle_hold, take_hold

USD = UNITS_PER_USD


@pytest.mark.parametrize(
    ("amount", "round_up", "units"),
    [
        (5.0, False, 5 * USD),
        (0.1, False, USD // 10),  # the decimal 0.1, not the float 0.1000000000000000055...
        ("0.000000000001", False, 1),
        ("0.0000000000015", False, 1),  # a cap is rounded down...
        ("0.0000000000015", True, 2),  # ...a price up
        (Decimal("12.34"), False, 1234 * USD // 100),
        (0, False, 0),
    ],
)
def test_dollars_become_whole_units(
    amount: float | str | Decimal, round_up: bool, units: int
) -> None:
    assert usd_units(amount, round_up=round_up) == units


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_negative_or_infinite_amount_is_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        usd_units(bad)


@pytest.mark.parametrize(
    ("units", "text"),
    [
        (5 * USD, "$5.00"),
        (1234 * USD // 100, "$12.34"),
        (1_234_567 * USD, "$1,234,567.00"),
        (USD * 4199 // 1000 + 1, "$4.19"),  # rounded down: never says more was spent
        (USD // 100, "$0.01"),
        (USD * 42 // 10_000, "$0.0042"),
        (0, "$0.00"),
        (1, "$0.00"),
    ],
)
def test_dollars_for_a_person(units: int, text: str) -> None:
    assert format_usd(units) == text


@pytest.mark.parametrize(
    ("input_usd", "output_usd", "rates"),
    [
        (0.35, 0.75, Rates(350_000, 750_000)),  # gpt-oss-120b: exact, no float drift
        (0, 0, Rates(0, 0)),
        (0.0000001, 2, Rates(1, 2_000_000)),  # finer than a unit a token: rounded up
    ],
)
def test_prices_per_million_become_units_per_token(
    input_usd: float, output_usd: float, rates: Rates
) -> None:
    assert Rates.per_million(input_usd, output_usd) == rates


def test_a_million_requests_cost_exactly_what_they_should() -> None:
    rates = Rates.per_million(0.35, 0.75)
    total = sum(rates.cost(26, 30) for _ in range(1_000_000))
    # 26M prompt tokens at $0.35/M plus 30M completion tokens at $0.75/M: $9.10 + $22.50.
    assert total == usd_units("31.60")
    assert format_usd(total) == "$31.60"


RATES = Rates(1, 10)  # a unit a prompt token, ten a completion token


def charge(prompt: int, completion: int) -> Charge:
    return Charge.of(RATES, prompt, completion)


@pytest.mark.parametrize(
    ("max_units", "max_tokens", "steps", "spent", "reserved"),
    [
        # (action, held, actual): reserve a worst case, or settle one to its actual cost.
        (100, None, [("reserve", (10, 5), True)], (0, 0), (60, 15)),
        (100, None, [("reserve", (10, 9), True)], (0, 0), (100, 19)),  # exactly the cap
        (100, None, [("reserve", (11, 9), False)], (0, 0), (0, 0)),  # one unit over
        (None, 20, [("reserve", (10, 10), True), ("reserve", (1, 0), False)], (0, 0), (110, 20)),
        # settled down to the actual: the refund makes room for the next one
        (
            100,
            None,
            [("reserve", (10, 9), True), ("settle", (10, 9), (10, 2)), ("reserve", (10, 5), True)],
            (30, 12),
            (60, 15),
        ),
        # no usage back: settled at the worst case, nothing refunded
        (
            100,
            None,
            [("reserve", (10, 5), True), ("settle", (10, 5), (10, 5)), ("reserve", (10, 5), False)],
            (60, 15),
            (0, 0),
        ),
        (None, None, [("reserve", (10**9, 10**9), True)], (0, 0), (11 * 10**9, 2 * 10**9)),
    ],
)
def test_reserve_and_settle(
    max_units: int | None,
    max_tokens: int | None,
    steps: list[tuple[object, ...]],
    spent: tuple[int, int],
    reserved: tuple[int, int],
) -> None:
    budget = Budget(max_units, max_tokens)
    for step in steps:
        if step[0] == "reserve":
            held, fits = step[1], step[2]
            assert isinstance(held, tuple)
            assert budget.reserve(charge(*held)) is fits
        else:
            held, actual = step[1], step[2]
            assert isinstance(held, tuple) and isinstance(actual, tuple)
            budget.settle(charge(*held), charge(*actual))
    assert budget.spent == Charge(*spent)
    assert budget.reserved == Charge(*reserved)


def test_spent_plus_reserved_never_passes_the_cap_whatever_the_order() -> None:
    budget = Budget(1000, 500)
    held: list[Charge] = []
    for i in range(200):
        worst = charge(3 + i % 7, 20)
        if budget.reserve(worst):
            held.append(worst)
        if i % 3 == 0 and held:
            first = held.pop(0)
            budget.settle(first, charge(first.tokens - 20, i % 20))
        used = budget.spent.units + budget.reserved.units
        assert used <= 1000 and budget.spent.tokens + budget.reserved.tokens <= 500


@pytest.mark.parametrize(
    ("spent", "reserved", "want", "hopeless"),
    [
        (0, 90, 20, False),  # the reservations may be refunded: wait for them
        (90, 0, 20, True),  # nothing in flight can make room
        (80, 10, 20, False),
        (81, 10, 20, True),
    ],
)
def test_a_request_is_hopeless_only_when_no_refund_can_make_room(
    spent: int, reserved: int, want: int, hopeless: bool
) -> None:
    budget = Budget(100)
    budget.spent, budget.reserved = Charge(spent, 0), Charge(reserved, 0)
    assert budget.hopeless(Charge(want, 0)) is hopeless


@pytest.mark.parametrize(
    ("budget", "spent", "message"),
    [
        (
            Budget(5 * USD),
            Charge(499 * USD // 100, 990),
            "budget of $5.00 reached after $4.99; rerun with a higher budget to resume",
        ),
        (
            Budget(None, 1000),
            Charge(499 * USD // 100, 990),
            "token budget of 1,000 reached after 990 tokens ($4.99); rerun with a higher "
            "budget to resume",
        ),
        (  # a run's share of the month says the month's cap and what the month spent
            Budget(USD, label="monthly budget", offset=Charge(24 * USD, 0), shown_units=25 * USD),
            Charge(USD * 99 // 100, 990),
            "monthly budget of $25.00 reached after $24.99; rerun with a higher budget to resume",
        ),
    ],
)
def test_the_message_says_the_cap_and_what_was_spent(
    budget: Budget, spent: Charge, message: str
) -> None:
    budget.spent = spent
    assert str(budget.reached(Charge(2 * USD, 20))) == message


# -- the month: holds across runs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spent", "holds", "run", "want", "held", "after_spent", "after_holds"),
    [
        ({}, {}, "a", 30, 30, {}, {"a": 30}),
        ({}, {}, "a", None, 100, {}, {"a": 100}),  # no run cap: all that is left
        ({"x": 60}, {"b": 30}, "a", 30, 10, {"x": 60}, {"b": 30, "a": 10}),
        ({"x": 60}, {"b": 40}, "a", 30, 0, {"x": 60}, {"b": 40}),  # nothing left: no hold
        # a hold left by a run of the same output that never settled is charged in full
        ({}, {"a": 25}, "a", 30, 30, {"a": 25}, {"a": 30}),
        ({"a": 90}, {"a": 10}, "a", 30, 0, {"a": 100}, {}),
    ],
)
def test_a_run_holds_its_share_of_the_month(
    spent: dict[str, int],
    holds: dict[str, int],
    run: str,
    want: int | None,
    held: int,
    after_spent: dict[str, int],
    after_holds: dict[str, int],
) -> None:
    after, got = take_hold(MonthRecord("2026-12", spent, holds), run, want, limit=100)
    assert got == held
    assert (after.spent, after.holds) == (after_spent, after_holds)


def test_two_runs_at_once_cannot_both_have_the_same_dollars() -> None:
    record = MonthRecord("2026-12")
    record, first = take_hold(record, "p1", None, limit=100)
    record, second = take_hold(record, "p2", None, limit=100)
    assert (first, second) == (100, 0)
    record = settle_hold(record, "p1", 40)  # p1 spent 40 of its 100: 60 go back to the month
    record, third = take_hold(record, "p2", None, limit=100)
    assert third == 60 and record.total_spent == 40


def test_a_month_record_round_trips() -> None:
    record = MonthRecord("2026-12", {"s3://b/out/dt=2026-12-01": 5}, {"x": 3})
    assert MonthRecord.parse(record.to_bytes(), "here") == record


# -- admission: waiting for refunds, stopping for good ---------------------------------------


def test_an_attempt_that_does_not_fit_yet_waits_for_a_refund() -> None:
    async def scenario() -> tuple[Charge, list[str]]:
        spending = Spending(Budget(60), RATES)
        first = await spending.reserve(charge(10, 4))  # 50 of 60
        order: list[str] = []

        async def second() -> None:
            await spending.reserve(charge(10, 4))
            order.append("second admitted")

        waiter = asyncio.ensure_future(second())
        await asyncio.sleep(0)
        order.append("first settles")
        spending.settle(first, charge(10, 0))  # it cost 10: 50 left
        await waiter
        return spending.budget.spent, order

    spent, order = asyncio.run(scenario())
    assert order == ["first settles", "second admitted"]
    assert spent == Charge(10, 10)


def test_once_reached_every_attempt_stops_even_one_that_would_fit() -> None:
    async def scenario() -> list[str]:
        spending = Spending(Budget(100), RATES)
        held = await spending.reserve(charge(10, 5))
        spending.settle(held, held)  # 60 spent
        outcomes = []
        for want in [charge(10, 5), charge(1, 0)]:  # 60 does not fit, then 1 would
            try:
                await spending.reserve(want)
                outcomes.append("admitted")
            except BudgetReached as exc:
                outcomes.append(str(exc))
        return outcomes

    first, second = asyncio.run(scenario())
    assert first == second
    assert first.startswith("budget of $0.00 reached after $0.00;")
