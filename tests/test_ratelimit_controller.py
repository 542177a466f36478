"""The rate controller on a fake clock: admission, refunds, 429s, daily quotas, live limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import FakeClock, eventually

from enrich.errors import QuotaExhausted
from enrich.ratelimit import Permit, RateController
from enrich.ratelimit.bucket import UNSEEN_FOR


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


async def test_acquire_with_room_does_not_suspend() -> None:
    ctl = controller(FakeClock(), requests_per_minute=600, tokens_per_minute=100_000)
    coro = ctl.acquire(100)
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert isinstance(done.value.value, Permit)


async def test_first_minute_goes_out_at_once_then_paced() -> None:
    clock = FakeClock()
    ctl = controller(clock, requests_per_minute=60)
    permits = [await ctl.acquire(1) for _ in range(60)]
    assert clock.sleeps == []  # the bucket starts full
    for permit in permits:  # answered at once: the server has counted them
        ctl.release(permit, used_tokens=1, status=200)
    start = clock.now
    await ctl.acquire(1)
    await ctl.acquire(1)
    assert clock.now - start == pytest.approx(2.0)  # then one a second
    assert (ctl.stats.acquired, ctl.stats.waited_s) == (62, pytest.approx(2.0))


async def test_unanswered_requests_hold_the_refill_of_a_full_bucket() -> None:
    clock = FakeClock()
    ctl = controller(clock, requests_per_minute=60)
    for _ in range(60):
        await ctl.acquire(1)  # nothing answers: maybe none has reached the server yet
    start = clock.now
    await ctl.acquire(1)
    assert clock.now - start == pytest.approx(UNSEEN_FOR + 1.0)


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
    code = "queue_exceeded" if status == 429 else None  # the provider's load: nobody waits
    ctl.release(permit, used_tokens=None, status=status, code=code)
    start = clock.now
    await ctl.acquire(1000)
    assert clock.now - start == pytest.approx(0.0 if refunded else 60.0)


async def test_in_flight_cap_blocks_until_a_release() -> None:
    ctl = controller(FakeClock(), max_in_flight=2)
    first = await ctl.acquire(1)
    await ctl.acquire(1)
    third = asyncio.create_task(ctl.acquire(1))
    await settle()
    assert not third.done()
    ctl.release(first, used_tokens=1)
    await eventually(third.done, message="the release admitted no waiter")
    await third
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
        (None, {}, 1.0),  # a 429 that says nothing is taken as the minute's requests
        (None, {"retry-after": "4"}, 4.0),
        # The provider's load and noise: only the request's own retry waits.
        ("queue_exceeded", {}, 0.0),
        ("queue_exceeded", {"retry-after": "4"}, 0.0),
        ("rate_limit_exceeded", {"x-ratelimit-remaining-requests": "7"}, 0.0),
        (None, {"retry-after": "2", "x-ratelimit-remaining-requests": "7"}, 0.0),
    ],
)
async def test_429_pauses_every_acquirer(code: str, headers: dict[str, str], pause: float) -> None:
    clock = FakeClock()
    ctl = controller(clock, tokens_per_minute=10**9, adaptive=False)
    permit = await ctl.acquire(10)
    ctl.release(permit, used_tokens=None, status=429, code=code, headers=headers)
    start = clock.now
    waiting = [asyncio.create_task(ctl.acquire(10)) for _ in range(3)]
    await asyncio.gather(*waiting)
    assert clock.now - start == pytest.approx(pause)


async def test_explicit_retry_after_overrides_headers() -> None:
    clock = FakeClock()
    ctl = controller(clock)
    permit = await ctl.acquire(1)
    ctl.release(permit, used_tokens=None, status=429, retry_after=2.0, headers={"retry-after": "9"})
    start = clock.now
    await ctl.acquire(1)
    assert clock.now - start == pytest.approx(2.0)


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
    start = clock.now
    await ctl.acquire(1)
    assert clock.now - start == pytest.approx(1.0)  # the server's bucket is empty: one refill


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


@pytest.mark.parametrize(
    ("code", "rpm", "tpm"),
    [
        (None, 60, 10_000),  # a 429 that names no limit is taken as the minute's requests
        ("rate_limit_exceeded", 60, 10_000),
        ("request_quota_exceeded", 60, 10_000),
        ("token_quota_exceeded", 120, 5_000),
        ("queue_exceeded", 120, 10_000),
    ],
)
async def test_a_429_lowers_the_limit_it_hit(code: str | None, rpm: float, tpm: float) -> None:
    ctl = controller(FakeClock(), requests_per_minute=120, tokens_per_minute=10_000)
    permit = await ctl.acquire(10)
    ctl.release(permit, used_tokens=None, status=429, code=code)
    assert (ctl.stats.effective_rpm, ctl.stats.effective_tpm) == (rpm, tpm)


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
    start = clock.now
    await ctl.acquire(1000)
    assert clock.now - start == pytest.approx(1.0)


async def test_daily_bucket_raises_instead_of_waiting_for_hours() -> None:
    ctl = controller(FakeClock(), requests_per_day=2)
    await ctl.acquire(1)
    await ctl.acquire(1)
    with pytest.raises(QuotaExhausted) as exc:
        await ctl.acquire(1)
    assert exc.value.which == "requests"
    assert exc.value.resets_in == pytest.approx(43_200)  # no reset known: the refill estimate


@pytest.mark.parametrize(
    ("limits", "tokens", "release", "which", "resets_in"),
    [
        (  # a success whose headers say the day's requests are spent
            {"requests_per_minute": 100},
            1,
            {
                "used_tokens": 1,
                "headers": {
                    "x-ratelimit-limit-requests-day": "14400",
                    "x-ratelimit-remaining-requests-day": "0",
                    "x-ratelimit-reset-requests-day": "3600",
                },
            },
            "requests",
            3600,
        ),
        (  # a 429 on the day's requests: it says nothing about the minute's
            {"requests_per_minute": 100},
            1,
            {
                "used_tokens": None,
                "status": 429,
                "code": "request_quota_exceeded",
                "headers": {
                    "x-ratelimit-remaining-requests-day": "0",
                    "x-ratelimit-reset-requests-day": "500",
                },
            },
            "requests",
            500,
        ),
        (  # a 429 on the day's tokens while the minute's are plenty
            {"tokens_per_minute": 100_000},
            1000,
            {
                "used_tokens": None,
                "status": 429,
                "code": "token_quota_exceeded",
                "headers": {
                    "x-ratelimit-limit-tokens-minute": "100000",
                    "x-ratelimit-remaining-tokens-minute": "95000",
                    "x-ratelimit-reset-requests-day": "7200",
                },
            },
            "tokens",
            7200,
        ),
    ],
)
async def test_a_spent_daily_quota_raises_with_its_reset_and_keeps_the_minute_limits(
    limits: dict[str, float],
    tokens: int,
    release: dict[str, Any],
    which: str,
    resets_in: float,
) -> None:
    ctl = controller(FakeClock(), **limits)
    minute_limits = (ctl.stats.effective_rpm, ctl.stats.effective_tpm)
    permit = await ctl.acquire(tokens)
    ctl.release(permit, **release)
    assert (ctl.stats.effective_rpm, ctl.stats.effective_tpm) == minute_limits
    with pytest.raises(QuotaExhausted) as exc:
        await ctl.acquire(tokens)
    assert exc.value.which == which
    assert exc.value.resets_in == pytest.approx(resets_in)


@pytest.mark.parametrize(
    ("code", "headers"),
    [
        ("request_quota_exceeded", {"retry-after": "600"}),
        (None, {"retry-after": "600"}),
        ("token_quota_exceeded", {"x-ratelimit-reset-tokens-minute": "600"}),
    ],
)
async def test_a_long_wait_on_a_minute_limit_does_not_stop_the_run(
    code: str | None, headers: dict[str, str]
) -> None:
    clock = FakeClock()
    ctl = controller(clock, max_wait_s=30.0, tokens_per_minute=10**9)
    permit = await ctl.acquire(1)
    ctl.release(permit, used_tokens=None, status=429, code=code, headers=headers)
    start = clock.now
    await ctl.acquire(1)  # no QuotaExhausted: a minute's bucket is full within its minute
    assert clock.now - start == pytest.approx(60.0)


@pytest.mark.parametrize(("reset", "raises"), [("119", False), ("121", True)])
async def test_daily_waits_longer_than_max_wait_raise(reset: str, raises: bool) -> None:
    ctl = controller(FakeClock(), max_wait_s=120.0)
    permit = await ctl.acquire(1)
    headers = {"x-ratelimit-remaining-requests-day": "0", "x-ratelimit-reset-requests-day": reset}
    ctl.release(permit, used_tokens=None, status=429, headers=headers)
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
    start = clock.now
    ctl.update_limits(requests_per_minute=600)
    await waiter
    assert clock.now - start < 1.0


async def test_update_limits_raises_the_in_flight_cap() -> None:
    ctl = controller(FakeClock(), max_in_flight=1)
    await ctl.acquire(1)
    waiter = asyncio.create_task(ctl.acquire(1))
    await settle()
    assert not waiter.done()
    ctl.update_limits(max_in_flight=2)
    await eventually(waiter.done, message="the raised cap admitted no waiter")
    await waiter


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


async def test_noise_slows_nobody_and_cuts_nothing() -> None:
    clock = FakeClock()
    ctl = controller(clock, requests_per_minute=60)
    permit = await ctl.acquire(1)
    headers = {"x-ratelimit-remaining-requests": "59", "retry-after": "1"}
    ctl.release(permit, used_tokens=None, status=429, code="rate_limit_exceeded", headers=headers)
    stats = ctl.stats
    assert (stats.throttled, stats.noise, stats.backoffs, stats.effective_rpm) == (1, 1, 0, 60)
    for _ in range(60):  # the refused request was given back: the whole minute is still there
        await ctl.acquire(1)
    assert clock.sleeps == []


async def test_a_provider_that_reports_requests_makes_its_silent_429s_noise() -> None:
    ctl = controller(FakeClock(), requests_per_minute=60)
    permit = await ctl.acquire(1)
    ctl.release(permit, used_tokens=1, status=200, headers={"x-ratelimit-remaining-requests": "58"})
    permit = await ctl.acquire(1)
    ctl.release(permit, used_tokens=None, status=429, code="rate_limit_exceeded")
    assert (ctl.stats.noise, ctl.stats.backoffs, ctl.stats.effective_rpm) == (1, 0, 60)


async def test_429s_within_one_window_lower_the_limit_once() -> None:
    clock = FakeClock()
    ctl = controller(clock, requests_per_minute=600)
    refused = {"status": 429, "code": "request_quota_exceeded", "retry_after": 0.1}
    first = await ctl.acquire(1)
    ctl.release(first, used_tokens=None, **refused)
    # Requests admitted after the cut, refused within the event's window: the same event.
    for _ in range(5):
        permit = await ctl.acquire(1)
        ctl.release(permit, used_tokens=None, **refused)
    assert clock.now - 1000.0 < 3.0
    assert (ctl.stats.throttled, ctl.stats.backoffs) == (6, 1)
    clock.advance(3.0)
    permit = await ctl.acquire(1)
    ctl.release(permit, used_tokens=None, **refused)
    assert ctl.stats.backoffs == 2


async def drive(
    ctl: RateController, clock: FakeClock, *, seconds: float, refused: float, seed: int = 1
) -> None:
    """Requests as fast as the controller admits them; ``refused`` of them get an unnamed
    429 at random whatever the rate, the rest succeed; answers come back at once."""
    import random

    rng = random.Random(seed)
    end = clock.now + seconds
    while clock.now < end:
        permit = await ctl.acquire(1)
        if rng.random() < refused:
            ctl.release(permit, used_tokens=None, status=429, code="rate_limit_exceeded")
        else:
            ctl.release(permit, used_tokens=1, status=200)
        clock.advance(0.01)


async def test_a_cut_on_noise_is_taken_back() -> None:
    clock = FakeClock()
    ctl = controller(clock, requests_per_minute=900)
    await drive(ctl, clock, seconds=30.0, refused=0.1)
    stats = ctl.stats
    assert stats.backoffs >= 1 and stats.undone >= 1  # cut, then found to be noise
    assert stats.noise > 0  # later ones were taken as noise from the start
    assert stats.effective_rpm == 900


async def test_a_cut_after_which_the_429s_stop_is_kept() -> None:
    clock = FakeClock()
    ctl = controller(clock, requests_per_minute=1200)
    await drive(ctl, clock, seconds=5.0, refused=0.0)
    permit = await ctl.acquire(1)
    ctl.release(permit, used_tokens=None, status=429, code="rate_limit_exceeded")
    cut = ctl.stats.effective_rpm
    assert cut is not None and cut < 1200
    await drive(ctl, clock, seconds=10.0, refused=0.0)
    assert ctl.stats.undone == 0
    # Held still while under test, then climbing from there, not restored.
    assert cut <= (ctl.stats.effective_rpm or 0) <= cut / 0.9
