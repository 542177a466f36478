"""Rate-limit arithmetic, header parsing and the rate controller, on fake and virtual clocks."""

from __future__ import annotations

import asyncio
import math
import random
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from enrich.buckets import (
    AdaptiveLimit,
    RateSnapshot,
    TokenBucket,
    parse_duration,
    parse_rate_headers,
    parse_retry_after,
)
from enrich.errors import QuotaExhausted
from enrich.ratelimit import Permit, RateController, throttle_kind

T = TypeVar("T")


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


def controller(clock: FakeClock, **kwargs: Any) -> RateController:
    limits: dict[str, Any] = {
        "max_in_flight": 100,
        "requests_per_minute": None,
        "tokens_per_minute": None,
    }
    return RateController(**(limits | kwargs), clock=clock, sleep=clock.sleep)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- TokenBucket ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "per_seconds", "take", "elapsed", "level"),
    [
        (60, 60, 0, 0, 60),  # full at start
        (60, 60, 60, 15, 15),  # refills at capacity / period
        (60, 60, 30, 600, 60),  # never beyond capacity
        (1000, 60, 1000, 6, 100),
        (60, 60, 90, 15, -15),  # a debt is paid back first
        (86_400, 86_400, 86_400, 3600, 3600),  # a day bucket refills by the second too
    ],
)
def test_bucket_level(
    capacity: float, per_seconds: float, take: float, elapsed: float, level: float
) -> None:
    bucket = TokenBucket(capacity, per_seconds, now=0.0)
    bucket.take(take, 0.0)
    assert bucket.level(elapsed) == pytest.approx(level)


@pytest.mark.parametrize(
    ("level_after_take", "n", "wait"),
    [
        (60, 1, 0.0),
        (0, 1, 1.0),
        (0, 30, 30.0),
        (10, 30, 20.0),
        (0, 60, 60.0),
        (0, 500, 60.0),  # larger than the bucket: waits until full, not forever
        (60, 500, 0.0),  # ...and goes through when it is
        (-30, 1, 31.0),
    ],
)
def test_bucket_wait_time(level_after_take: float, n: float, wait: float) -> None:
    bucket = TokenBucket(60, 60, now=0.0)
    bucket.take(60 - level_after_take, 0.0)
    assert bucket.wait_time(n, 0.0) == pytest.approx(wait)


def test_bucket_of_nothing_never_fits() -> None:
    assert TokenBucket(0, 60, now=0.0).wait_time(1, 0.0) == math.inf


def test_refund_clamps_at_capacity() -> None:
    bucket = TokenBucket(100, 60, now=0.0)
    bucket.take(30, 0.0)
    bucket.refund(50, 0.0)
    assert bucket.level(0.0) == 100


@pytest.mark.parametrize(
    ("ours_taken", "remaining", "level"),
    [
        (0, 40, 40),  # the server knows about other clients: adopt the lower count
        (70, 40, 30),  # ours is lower (requests the server has not seen yet): keep ours
        (0, None, 100),
    ],
)
def test_sync_takes_the_lower_level(
    ours_taken: float, remaining: float | None, level: float
) -> None:
    bucket = TokenBucket(100, 60, now=0.0)
    bucket.take(ours_taken, 0.0)
    bucket.sync(remaining, 11.0, 0.0)  # a minute bucket ignores reset: it refills continuously
    assert bucket.level(0.0) == level


def test_fixed_window_bucket_waits_for_its_reset() -> None:
    day = TokenBucket(1000, 86_400, now=0.0, fixed_window=True)
    day.sync(0, 3600.0, 0.0)
    assert day.wait_time(1, 10.0) == pytest.approx(3590.0)
    assert day.level(3599.0) == 0  # no trickle before the reset
    assert day.level(3600.0) == 1000
    assert day.wait_time(1, 3600.0) == 0.0


def test_set_capacity_clamps_level_and_changes_rate() -> None:
    bucket = TokenBucket(120, 60, now=0.0)
    bucket.set_capacity(60, 0.0)
    assert bucket.level(0.0) == 60
    bucket.take(60, 0.0)
    assert bucket.wait_time(1, 0.0) == pytest.approx(1.0)


# -- AdaptiveLimit ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effective", "accepted", "lowered"),
    [
        (1000, 600, 540),  # to what the server accepted, less 10 %
        (1000, 2000, 900),  # at least 10 % down
        (1000, 0, 500),  # at most halved per overshoot
    ],
)
def test_throttle_lowers_toward_what_was_accepted(
    effective: float, accepted: float, lowered: float
) -> None:
    limit = AdaptiveLimit(effective)
    assert limit.on_throttle(seq=0, next_seq=10, now=0.0, pending=accepted)
    assert limit.effective == pytest.approx(lowered)


def test_one_overshoot_lowers_the_limit_once() -> None:
    limit = AdaptiveLimit(1000)
    assert limit.on_throttle(seq=5, next_seq=10, now=0.0, pending=800)
    assert not limit.on_throttle(seq=9, next_seq=10, now=0.0, pending=800)  # same burst
    assert limit.on_throttle(seq=10, next_seq=12, now=0.0, pending=800)  # admitted after it
    assert limit.effective == pytest.approx(720 * 0.9)


def test_successes_probe_back_up_to_the_ceiling() -> None:
    limit = AdaptiveLimit(100)
    limit.on_throttle(seq=0, next_seq=1, now=0.0, pending=50)
    assert limit.effective == pytest.approx(50)
    limit.on_success(50, now=1.0)  # one period's worth at the current limit: +5 % of ceiling
    assert limit.effective == pytest.approx(55)
    for i in range(1000):
        limit.on_success(1, now=2.0 + i)
    assert limit.effective == 100


def test_limit_takes_the_lower_of_configured_and_server() -> None:
    limit = AdaptiveLimit(1000)
    limit.set_limits(configured=1000, server=600)
    assert (limit.ceiling, limit.effective) == (600, 600)
    limit.set_limits(configured=2000, server=None)
    assert limit.effective == 2000  # it was at the ceiling: follows a raise at once


# -- headers ----------------------------------------------------------------------------------

CEREBRAS = {  # the documented example
    "x-ratelimit-limit-requests-day": "1000000000",
    "x-ratelimit-limit-tokens-minute": "1000000000",
    "x-ratelimit-remaining-requests-day": "999997455",
    "x-ratelimit-remaining-tokens-minute": "999998298",
    "x-ratelimit-reset-requests-day": "33011.382867097855",
    "x-ratelimit-reset-tokens-minute": "11.382867097854614",
    "content-type": "application/json",
}
OPENAI = {
    "X-RateLimit-Limit-Requests": "500",
    "X-RateLimit-Remaining-Requests": "499",
    "X-RateLimit-Reset-Requests": "120ms",
    "X-RateLimit-Limit-Tokens": "30000",
    "X-RateLimit-Remaining-Tokens": "29000",
    "X-RateLimit-Reset-Tokens": "6m0s",
}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, RateSnapshot()),
        (
            CEREBRAS,
            RateSnapshot(
                limit_requests_day=1e9,
                remaining_requests_day=999997455,
                reset_requests_day=33011.382867097855,
                limit_tokens_minute=1e9,
                remaining_tokens_minute=999998298,
                reset_tokens_minute=11.382867097854614,
            ),
        ),
        (
            OPENAI,
            RateSnapshot(
                limit_requests_minute=500,
                remaining_requests_minute=499,
                reset_requests_minute=0.12,
                limit_tokens_minute=30000,
                remaining_tokens_minute=29000,
                reset_tokens_minute=360.0,
            ),
        ),
        (
            {"X-RATELIMIT-REMAINING-TOKENS-MINUTE": "12", "x-ratelimit-remaining-tokens": "99"},
            RateSnapshot(remaining_tokens_minute=12),  # the explicit -minute header wins
        ),
        (
            {
                "x-ratelimit-limit-tokens-minute": "lots",
                "x-ratelimit-remaining-tokens-minute": "-5",
                "x-ratelimit-reset-tokens-minute": "soon",
                "x-ratelimit-remaining-requests-day": "nan",
                "x-ratelimit-reset-requests-day": "1x",
                "x-ratelimit-limit-requests-day": "inf",
            },
            RateSnapshot(),  # malformed values are as good as absent
        ),
        ({"x-ratelimit-remaining-requests-day": " 7 "}, RateSnapshot(remaining_requests_day=7)),
    ],
)
def test_parse_rate_headers(headers: dict[str, str], expected: RateSnapshot) -> None:
    assert parse_rate_headers(headers) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("11.382867097854614", 11.382867097854614),
        ("0", 0.0),
        ("1s", 1.0),
        ("0.5s", 0.5),
        ("20ms", 0.02),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("1.5m", 90.0),
        ("", None),
        ("s", None),
        ("5 s", None),
        ("-1s", None),
        ("1d", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "300", "retry-after": "9"}, 0.3),  # the finer one wins
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"}, 30.0),
        ({"retry-after": "Tue, 14 Nov 2023 22:00:00 GMT"}, 0.0),  # already past
        ({"retry-after": "tomorrow"}, None),
        ({"retry-after": "-3"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == seconds


@pytest.mark.parametrize(
    ("code", "headers", "tokens", "kind"),
    [
        ("queue_exceeded", {}, 100, "capacity"),
        ("request_quota_exceeded", {}, 100, "requests"),
        (
            "request_quota_exceeded",
            {"x-ratelimit-remaining-requests-day": "0"},
            100,
            "requests_day",
        ),
        ("token_quota_exceeded", {"x-ratelimit-remaining-tokens-minute": "50"}, 100, "tokens"),
        ("token_quota_exceeded", {}, 100, "tokens"),
        (
            "token_quota_exceeded",  # the minute bucket has plenty: it is the day's tokens
            {
                "x-ratelimit-remaining-tokens-minute": "90000",
                "x-ratelimit-limit-tokens-minute": "100000",
            },
            100,
            "tokens_day",
        ),
        (None, {"x-ratelimit-remaining-tokens": "10"}, 100, "tokens"),
        (None, {}, 100, "requests"),
    ],
)
def test_throttle_kind(code: str | None, headers: dict[str, str], tokens: int, kind: str) -> None:
    assert throttle_kind(code, parse_rate_headers(headers), tokens) == kind


# -- RateController ---------------------------------------------------------------------------


async def test_acquire_with_room_does_not_suspend() -> None:
    ctl = controller(FakeClock(), requests_per_minute=600, tokens_per_minute=100_000)
    coro = ctl.acquire(100)
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert isinstance(done.value.value, Permit)


async def test_first_minute_goes_out_at_once_then_paced() -> None:
    clock = FakeClock()
    ctl = controller(clock, requests_per_minute=60)
    for _ in range(60):
        await ctl.acquire(1)
    assert clock.sleeps == []  # the bucket starts full
    start = clock.t
    await ctl.acquire(1)
    await ctl.acquire(1)
    assert clock.t - start == pytest.approx(2.0)  # then one a second
    assert (ctl.stats.acquired, ctl.stats.waited_s) == (62, pytest.approx(2.0))


async def test_reservation_is_refunded_from_usage() -> None:
    clock = FakeClock()
    ctl = controller(clock, tokens_per_minute=1000)
    first = await ctl.acquire(600)  # prompt estimate + max_completion_tokens
    ctl.release(first, used_tokens=100)  # 500 come back
    await ctl.acquire(900)
    assert clock.sleeps == []


async def test_usage_above_reservation_is_charged() -> None:
    clock = FakeClock()
    ctl = controller(clock, tokens_per_minute=1000)
    permit = await ctl.acquire(100)
    ctl.release(permit, used_tokens=700)
    await ctl.acquire(400)
    assert sum(clock.sleeps) == pytest.approx(6.0)  # 100 missing tokens at 1000/min


@pytest.mark.parametrize(
    ("status", "refunded"),
    [
        (500, True),  # the server answered without doing the work
        (400, True),
        (429, True),  # a rejected request is not charged
        (408, False),  # it may have done the work
        (None, False),  # a transport failure: we cannot know
    ],
)
async def test_failed_attempt_refunds_when_the_server_did_no_work(
    status: int | None, refunded: bool
) -> None:
    clock = FakeClock()
    ctl = controller(clock, tokens_per_minute=1000, adaptive=False)
    permit = await ctl.acquire(1000)
    code = "queue_exceeded" if status == 429 else None
    ctl.release(permit, used_tokens=None, status=status, code=code)
    start = clock.t
    blocked = 1.0 if status == 429 else 0.0  # queue_exceeded pauses everyone briefly
    await ctl.acquire(1000)
    assert clock.t - start == pytest.approx(blocked if refunded else 60.0)


async def test_in_flight_cap_blocks_until_a_release() -> None:
    ctl = controller(FakeClock(), max_in_flight=2)
    first = await ctl.acquire(1)
    await ctl.acquire(1)
    third = asyncio.create_task(ctl.acquire(1))
    await settle()
    assert not third.done()
    ctl.release(first, used_tokens=1)
    await asyncio.wait_for(third, 1)
    assert ctl.stats.in_flight == 2


async def test_waiters_are_served_in_order() -> None:
    clock = FakeClock()
    ctl = controller(clock, tokens_per_minute=600)
    await ctl.acquire(600)
    order: list[str] = []

    async def one(name: str, tokens: int) -> None:
        await ctl.acquire(tokens)
        order.append(name)

    tasks = [asyncio.create_task(one(n, t)) for n, t in (("big", 500), ("small", 10), ("tiny", 1))]
    await settle()
    assert await ctl.acquire(1)  # a newcomer queues behind them too
    await asyncio.gather(*tasks)
    assert order == ["big", "small", "tiny"]


@pytest.mark.parametrize(
    ("code", "headers", "pause"),
    [
        ("token_quota_exceeded", {"x-ratelimit-reset-tokens-minute": "7.5"}, 7.5),
        ("request_quota_exceeded", {"retry-after": "3"}, 3.0),
        ("request_quota_exceeded", {"retry-after-ms": "250"}, 0.25),
        ("queue_exceeded", {}, 1.0),
        ("queue_exceeded", {"retry-after": "4"}, 4.0),
    ],
)
async def test_429_pauses_every_acquirer(code: str, headers: dict[str, str], pause: float) -> None:
    clock = FakeClock()
    ctl = controller(clock, tokens_per_minute=10**9, adaptive=False)
    permit = await ctl.acquire(10)
    ctl.release(permit, used_tokens=None, status=429, code=code, headers=headers)
    start = clock.t
    waiting = [asyncio.create_task(ctl.acquire(10)) for _ in range(3)]
    await asyncio.gather(*waiting)
    assert clock.t - start == pytest.approx(pause)


async def test_explicit_retry_after_overrides_headers() -> None:
    clock = FakeClock()
    ctl = controller(clock)
    permit = await ctl.acquire(1)
    ctl.release(permit, used_tokens=None, status=429, retry_after=2.0, headers={"retry-after": "9"})
    start = clock.t
    await ctl.acquire(1)
    assert clock.t - start == pytest.approx(2.0)


async def test_request_quota_429_empties_the_bucket_and_lowers_the_limit() -> None:
    clock = FakeClock()
    ctl = controller(clock, requests_per_minute=120)
    permits = [await ctl.acquire(1) for _ in range(60)]
    for permit in permits[:59]:
        ctl.release(permit, used_tokens=1, status=200)
    ctl.release(permits[59], used_tokens=None, status=429, code="request_quota_exceeded")
    stats = ctl.stats
    assert (stats.throttled, stats.backoffs) == (1, 1)
    assert stats.effective_rpm == pytest.approx(60)  # halved at most, toward 59 accepted
    start = clock.t
    await ctl.acquire(1)
    assert clock.t - start == pytest.approx(1.0)  # the server's bucket is empty: one refill


async def test_fixed_limits_stay_fixed() -> None:
    ctl = controller(FakeClock(), requests_per_minute=120, adaptive=False)
    permit = await ctl.acquire(1)
    ctl.release(permit, used_tokens=None, status=429, code="request_quota_exceeded")
    assert (ctl.stats.throttled, ctl.stats.backoffs, ctl.stats.effective_rpm) == (1, 0, 120)


async def test_capacity_429_does_not_lower_limits() -> None:
    ctl = controller(FakeClock(), requests_per_minute=120, tokens_per_minute=10_000)
    permit = await ctl.acquire(10)
    ctl.release(permit, used_tokens=None, status=429, code="queue_exceeded")
    assert (ctl.stats.effective_rpm, ctl.stats.effective_tpm) == (120, 10_000)


async def test_server_limit_caps_the_configured_one() -> None:
    ctl = controller(FakeClock(), tokens_per_minute=1_000_000)
    permit = await ctl.acquire(10)
    ctl.release(permit, used_tokens=10, headers={"x-ratelimit-limit-tokens-minute": "60000"})
    assert ctl.stats.effective_tpm == 60_000


async def test_remaining_header_resyncs_the_bucket() -> None:
    clock = FakeClock()
    ctl = controller(clock, tokens_per_minute=60_000)
    permit = await ctl.acquire(1000)
    headers = {"x-ratelimit-remaining-tokens-minute": "0"}  # another client used it all
    ctl.release(permit, used_tokens=1000, headers=headers)
    start = clock.t
    await ctl.acquire(1000)
    assert clock.t - start == pytest.approx(1.0)


async def test_daily_bucket_raises_instead_of_waiting_for_hours() -> None:
    ctl = controller(FakeClock(), requests_per_day=2)
    await ctl.acquire(1)
    await ctl.acquire(1)
    with pytest.raises(QuotaExhausted) as exc:
        await ctl.acquire(1)
    assert exc.value.which == "requests"
    assert exc.value.resets_in == pytest.approx(43_200)  # no reset known: the refill estimate


async def test_daily_headers_say_when_the_quota_resets() -> None:
    ctl = controller(FakeClock(), requests_per_minute=100)
    permit = await ctl.acquire(1)
    headers = {
        "x-ratelimit-limit-requests-day": "14400",
        "x-ratelimit-remaining-requests-day": "0",
        "x-ratelimit-reset-requests-day": "3600",
    }
    ctl.release(permit, used_tokens=1, headers=headers)
    with pytest.raises(QuotaExhausted) as exc:
        await ctl.acquire(1)
    assert exc.value.which == "requests"
    assert exc.value.resets_in == pytest.approx(3600)


async def test_daily_429_raises_without_lowering_the_minute_limit() -> None:
    ctl = controller(FakeClock(), requests_per_minute=100)
    permit = await ctl.acquire(1)
    headers = {"x-ratelimit-remaining-requests-day": "0", "x-ratelimit-reset-requests-day": "500"}
    ctl.release(
        permit, used_tokens=None, status=429, code="request_quota_exceeded", headers=headers
    )
    assert ctl.stats.effective_rpm == 100
    with pytest.raises(QuotaExhausted) as exc:
        await ctl.acquire(1)
    assert exc.value.resets_in == pytest.approx(500)


async def test_daily_token_429_raises() -> None:
    ctl = controller(FakeClock(), tokens_per_minute=100_000)
    permit = await ctl.acquire(1000)
    headers = {
        "x-ratelimit-limit-tokens-minute": "100000",
        "x-ratelimit-remaining-tokens-minute": "95000",
        "x-ratelimit-reset-requests-day": "7200",
    }
    ctl.release(permit, used_tokens=None, status=429, code="token_quota_exceeded", headers=headers)
    with pytest.raises(QuotaExhausted) as exc:
        await ctl.acquire(1000)
    assert exc.value.which == "tokens"
    assert exc.value.resets_in == pytest.approx(7200)


@pytest.mark.parametrize(("retry_after", "raises"), [(119.0, False), (121.0, True)])
async def test_waits_longer_than_max_wait_raise(retry_after: float, raises: bool) -> None:
    ctl = controller(FakeClock(), max_wait_s=120.0)
    permit = await ctl.acquire(1)
    ctl.release(permit, used_tokens=None, status=429, retry_after=retry_after)
    if raises:
        with pytest.raises(QuotaExhausted):
            await ctl.acquire(1)
    else:
        await ctl.acquire(1)


async def test_update_limits_wakes_a_waiter() -> None:
    clock = FakeClock()
    ctl = controller(clock, requests_per_minute=1)
    await ctl.acquire(1)
    waiter = asyncio.create_task(ctl.acquire(1))
    await settle()  # asleep: the next request is a minute away
    assert not waiter.done()
    start = clock.t
    ctl.update_limits(requests_per_minute=600)
    await waiter
    assert clock.t - start < 1.0


async def test_update_limits_raises_the_in_flight_cap() -> None:
    ctl = controller(FakeClock(), max_in_flight=1)
    await ctl.acquire(1)
    waiter = asyncio.create_task(ctl.acquire(1))
    await settle()
    assert not waiter.done()
    ctl.update_limits(max_in_flight=2)
    await asyncio.wait_for(waiter, 1)


async def test_update_limits_can_remove_and_keep_limits() -> None:
    clock = FakeClock()
    ctl = controller(clock, requests_per_minute=1, tokens_per_minute=1000)
    ctl.update_limits(requests_per_minute=None)
    for _ in range(5):
        await ctl.acquire(100)
    assert clock.sleeps == []
    assert (ctl.stats.effective_rpm, ctl.stats.effective_tpm) == (None, 1000)


@pytest.mark.parametrize(
    "limits",
    [{"requests_per_minute": 0}, {"tokens_per_day": -1.0}, {"max_in_flight": 0}],
)
def test_update_limits_rejects_nonsense(limits: dict[str, Any]) -> None:
    ctl = controller(FakeClock())
    with pytest.raises(ValueError):
        ctl.update_limits(**limits)


async def test_release_twice_is_harmless() -> None:
    ctl = controller(FakeClock(), max_in_flight=1)
    permit = await ctl.acquire(1)
    ctl.release(permit, used_tokens=1)
    ctl.release(permit, used_tokens=1)
    assert ctl.stats.in_flight == 0


# -- convergence against a simulated server ----------------------------------------------------


class _VirtualSelector(selectors.DefaultSelector):
    """Never blocks: the time the loop would wait passes instantly."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if not events:
            if timeout is None:
                raise RuntimeError("deadlock: nothing scheduled and nothing ready")
            self.now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: real asyncio semantics, minutes simulated in milliseconds."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Callable[[VirtualTimeLoop], Awaitable[T]]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


class SimServer:
    """A provider with a true requests bucket of ``rpm`` and optionally a token bucket of ``tpm``.

    Like Cerebras: both full at start, refilled continuously, tokens reserved on arrival and
    refunded to usage on completion, remaining tokens in headers, no request headers.
    """

    def __init__(self, loop: VirtualTimeLoop, rpm: float, tpm: float | None = None) -> None:
        self.loop, self.rpm, self.tpm = loop, rpm, tpm
        self.requests, self.tokens, self.stamp = rpm, tpm or 0.0, 0.0
        self.log: list[tuple[float, int]] = []

    def _refill(self) -> float:
        now = self.loop.time()
        elapsed, self.stamp = now - self.stamp, now
        self.requests = min(self.rpm, self.requests + elapsed * self.rpm / 60)
        if self.tpm is not None:
            self.tokens = min(self.tpm, self.tokens + elapsed * self.tpm / 60)
        return now

    def headers(self) -> dict[str, str]:
        if self.tpm is None:
            return {}
        return {
            "x-ratelimit-limit-tokens-minute": str(int(self.tpm)),
            "x-ratelimit-remaining-tokens-minute": str(int(self.tokens)),
        }

    def admit(self, reserve: int) -> tuple[int, str | None]:
        now = self._refill()
        if self.requests < 1:
            status, code = 429, "request_quota_exceeded"
        elif self.tpm is not None and self.tokens < reserve:
            status, code = 429, "token_quota_exceeded"
        else:
            self.requests -= 1
            self.tokens -= reserve
            status, code = 200, None
        self.log.append((now, status))
        return status, code

    def complete(self, reserve: int, used: int) -> None:
        self._refill()
        if self.tpm is not None:
            self.tokens = min(self.tpm, self.tokens + reserve - used)


def simulate(
    rpm: float, configured_rpm: float, *, tpm: float | None = None, workers: int = 256
) -> tuple[float, float]:
    """Drive a controller against a :class:`SimServer` for two minutes.

    Returns (429 fraction, successes per minute) from 10 s on.
    """
    duration, warm_up = 130.0, 10.0
    rng = random.Random(7)

    async def main(loop: VirtualTimeLoop) -> list[tuple[float, int]]:
        server = SimServer(loop, rpm, tpm)
        ctl = RateController(
            max_in_flight=workers,
            requests_per_minute=configured_rpm,
            tokens_per_minute=None if tpm is None else 2 * tpm,
            clock=loop.time,
            sleep=asyncio.sleep,
        )

        async def worker() -> None:
            while True:
                reserve = 1000
                permit = await ctl.acquire(reserve)
                status, code = server.admit(reserve)
                if status == 200:
                    await asyncio.sleep(0.2 + 0.6 * rng.random())
                    used = rng.randrange(200, 800)
                    server.complete(reserve, used)
                    ctl.release(permit, used_tokens=used, status=200, headers=server.headers())
                else:
                    await asyncio.sleep(0.01)
                    ctl.release(
                        permit, used_tokens=None, status=429, code=code, headers=server.headers()
                    )
                    await asyncio.sleep(rng.random())  # the retry policy's backoff

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        await asyncio.sleep(duration)
        for task in tasks:
            task.cancel()  # most are queued in acquire()
        await asyncio.gather(*tasks, return_exceptions=True)
        return server.log

    log = [status for t, status in run_virtual(main) if warm_up <= t < duration]
    rejected = log.count(429) / len(log)
    return rejected, log.count(200) / (duration - warm_up) * 60


@pytest.mark.parametrize("rpm", [60, 600, 3000])
def test_adaptive_rpm_converges_from_twice_the_real_limit(rpm: float) -> None:
    rejected, achieved = simulate(rpm, configured_rpm=2 * rpm)
    assert rejected <= 0.02
    assert achieved >= 0.85 * rpm


def test_token_headers_keep_a_token_bound_run_clean() -> None:
    # 60k TPM at ~500 tokens a request is ~120 requests a minute; the RPM is not the limit.
    rejected, achieved = simulate(10_000, configured_rpm=20_000, tpm=60_000)
    assert rejected <= 0.02
    assert achieved >= 0.85 * 60_000 / 500
