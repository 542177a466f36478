"""A fleet's per-minute budget in grants: the arithmetic, the holding, and two processes sharing
one grant source (a rate limit with decaying slots, as Prefect's) on virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from support import FakeClock, allowance, overdraft, run_virtual, window_peak

from enrich.ratelimit import RateController
from enrich.ratelimit.grants import Grant, GrantPolicy, Holding, grant_ask, settle_share
from enrich.ratelimit.share import FleetShare

POLICY = GrantPolicy(horizon_s=5.0, max_share=0.25)


@pytest.mark.parametrize(
    ("need", "recent", "per_minute", "ask"),
    [
        (1, 0, 120, 10),  # a start: a horizon of the fair rate (2/s for 5 s)
        (1, 25, 120, 25),  # busier than fair: a horizon at the current rate
        (1, 100, 120, 30),  # never more than a quarter of the fleet's minute at once
        (40, 0, 120, 40),  # but always what the waiting request needs
        (1, 0, 6, 1),  # a tiny quota: still whole requests
        (1_500, 0, 60_000, 5_000),  # tokens: a horizon's worth
        (1_500, 9_000, 60_000, 9_000),
        (1_500, 40_000, 60_000, 15_000),
    ],
)
def test_grant_ask(need: int, recent: int, per_minute: float, ask: int) -> None:
    assert grant_ask(need, recent, per_minute, POLICY) == ask


def test_a_request_beyond_the_fleet_minute_is_refused() -> None:
    with pytest.raises(ValueError, match="more than the fleet's budget of 1000 a minute"):
        grant_ask(1_001, 0, 1_000, POLICY)


@pytest.mark.parametrize(
    ("used", "status", "back"),
    [
        (300, 200, Grant(0, 700)),  # usage: the unused reservation comes back
        (1_200, 200, Grant(0, -200)),  # more than reserved: owed
        (None, 429, Grant(1, 1_000)),  # refused: the provider counted nothing
        (None, 500, Grant(0, 1_000)),  # answered without work: its tokens
        (None, 408, Grant()),  # may have done the work
        (None, None, Grant()),  # a transport failure: cannot know
    ],
)
def test_settle_share(used: int | None, status: int | None, back: Grant) -> None:
    assert settle_share(1_000, used, status) == back


def test_an_unused_grant_expires_after_the_horizon() -> None:
    holding = Holding(horizon_s=5.0)
    holding.add(10, now=0.0)
    holding.take(4, now=1.0)
    assert holding.held(4.9) == 6
    assert (holding.held(5.0), holding.expired) == (0, 6)
    holding.give_back(3, now=6.0)  # nothing live to join: dropped
    assert (holding.held(6.0), holding.expired) == (0, 9)


def test_use_beyond_the_holding_is_owed_and_paid_from_the_next_grant() -> None:
    holding = Holding(horizon_s=5.0)
    holding.add(10, now=0.0)
    holding.take(8, now=0.0)
    holding.give_back(-5, now=0.0)  # used 5 more than it reserved
    assert (holding.held(0.0), holding.owed, holding.short(1, 0.0)) == (0, 3, 4)
    holding.add(10, now=1.0)
    assert (holding.held(1.0), holding.owed) == (7, 0)
    holding.give_back(2, now=2.0)
    assert holding.held(2.0) == 9
    assert holding.recent(2.0) == 8 and holding.recent(5.0) == 0


class DecayingLimit:
    """A rate limit as Prefect keeps it: slots that decay at a steady rate, at most ``limit``
    occupied; an ask waits until it fits. Every ask costs a round trip of ``latency_s``."""

    def __init__(
        self,
        limit: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        latency_s: float,
    ) -> None:
        self.limit, self.clock, self.sleep, self.latency_s = limit, clock, sleep, latency_s
        self.level, self.at = 0.0, clock()
        self.granted: list[tuple[float, int]] = []

    def _decay(self) -> None:
        now = self.clock()
        self.level = max(0.0, self.level - (now - self.at) * self.limit / 60)
        self.at = now

    async def acquire(self, n: int) -> None:
        await self.sleep(self.latency_s)
        while True:
            self._decay()
            if self.level + n <= self.limit + 1e-6:
                self.level += n
                self.granted.append((self.clock(), n))
                return
            await self.sleep(max(0.01, (self.level + n - self.limit) / (self.limit / 60)))


class FakeFleet:
    """The grant source over two decaying limits, one per unit."""

    def __init__(
        self,
        rpm: float,
        tpm: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.requests_per_minute: float | None = rpm
        self.tokens_per_minute: float | None = tpm
        self.rpm = DecayingLimit(rpm, clock, sleep, latency_s=0.1)
        self.tpm = DecayingLimit(tpm, clock, sleep, latency_s=0.1)
        self.asks = 0

    async def take(self, requests: int, tokens: int) -> Grant:
        self.asks += 1
        if requests:
            await self.rpm.acquire(requests)
        if tokens:
            await self.tpm.acquire(tokens)
        return Grant(requests, tokens)


async def test_many_draws_share_one_ask() -> None:
    clock = FakeClock()
    fleet = FakeFleet(rpm=120, tpm=60_000, clock=clock, sleep=clock.sleep)
    share = FleetShare(fleet, policy=POLICY, clock=clock)
    await asyncio.gather(*(share.draw(500) for _ in range(10)))
    # 10 requests and 5,000 tokens: one ask of a horizon's fair share covers them all.
    assert (fleet.asks, share.stats.requests_granted, share.stats.tokens_granted) == (
        1,
        10,
        5_000,
    )
    await share.draw(500)
    assert fleet.asks == 2


RPM, TPM, RESERVE = 120.0, 60_000.0, 400  # tokens reserved per request: tokens bind at 150/min


def two_processes(*, shared: bool, rows: int = 300) -> tuple[list[tuple[float, float]], int]:
    """Two processes, each with its own controller paced to the whole quota, sending ``rows``
    requests each at 0.5 s latency; with ``shared``, both draw from one fleet. Returns every
    send's (time, tokens reserved) and the asks made."""

    async def main(loop: asyncio.AbstractEventLoop) -> tuple[list[tuple[float, float]], int]:
        fleet = FakeFleet(RPM, TPM, clock=loop.time)
        sent: list[tuple[float, float]] = []

        async def process() -> None:
            share = FleetShare(fleet, policy=POLICY, clock=loop.time) if shared else None
            ctl = RateController(
                max_in_flight=16,
                requests_per_minute=RPM,
                tokens_per_minute=TPM,
                clock=loop.time,
                share=share,
            )

            async def one() -> None:
                permit = await ctl.acquire(RESERVE)
                sent.append((loop.time(), RESERVE))
                await asyncio.sleep(0.5)
                ctl.release(permit, used_tokens=RESERVE - 100, status=200)

            await asyncio.gather(*(one() for _ in range(rows)))

        await asyncio.gather(process(), process())
        return sent, fleet.asks

    return run_virtual(main)


def test_two_processes_on_one_fleet_keep_to_the_account_quota() -> None:
    sent, asks = two_processes(shared=True)
    requests = [(t, 1.0) for t, _ in sent]
    assert len(sent) == 600
    # Sends lag their grants by at most a horizon: at most that much refill beyond the bucket.
    assert overdraft(requests, RPM) <= RPM / 60 * POLICY.horizon_s
    assert overdraft(sent, TPM) <= TPM / 60 * POLICY.horizon_s
    assert window_peak(requests, 10) <= allowance(RPM, 10)
    assert window_peak(sent, 10) <= allowance(TPM, 10)
    assert asks < 600 / 5  # grants of many requests, never one per request


def test_two_processes_each_on_the_whole_quota_ask_for_twice_it() -> None:
    sent, _ = two_processes(shared=False)
    requests = [(t, 1.0) for t, _ in sent]
    assert window_peak(requests, 10) > allowance(RPM, 10)
    assert overdraft(requests, RPM) >= RPM / 2


async def test_a_throttled_request_hands_its_request_and_tokens_back() -> None:
    clock = FakeClock()
    fleet = FakeFleet(rpm=120, tpm=60_000, clock=clock, sleep=clock.sleep)
    share = FleetShare(fleet, policy=POLICY, clock=clock)
    ctl = RateController(
        max_in_flight=16,
        requests_per_minute=None,
        tokens_per_minute=None,
        clock=clock,
        sleep=clock.sleep,
        share=share,
    )
    permits = [await ctl.acquire(500) for _ in range(10)]  # the first grant, all drawn
    ctl.release(permits[0], used_tokens=None, status=429)
    ctl.release(permits[1], used_tokens=200, status=200)
    assert fleet.asks == 1
    await ctl.acquire(800)  # 1 request, 500 + 300 tokens back: no new ask
    assert fleet.asks == 1
    await ctl.acquire(1)
    assert fleet.asks == 2


async def test_a_cancelled_draw_frees_the_controller_slot() -> None:
    clock = FakeClock()
    fleet = FakeFleet(rpm=6, tpm=60_000, clock=clock, sleep=clock.sleep)
    fleet.rpm.level = 6  # the fleet's minute is spent: the ask waits
    ctl = RateController(
        max_in_flight=1,
        requests_per_minute=None,
        tokens_per_minute=None,
        clock=clock,
        sleep=clock.sleep,
        share=FleetShare(fleet, policy=POLICY, clock=clock),
    )
    waiting = asyncio.ensure_future(ctl.acquire(10))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert ctl.stats.in_flight == 0
