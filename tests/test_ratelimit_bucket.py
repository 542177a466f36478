"""The pacing bucket (client side): refill, debt, waits, re-sync from headers, fixed windows."""

from __future__ import annotations

import math

import pytest

from enrich.ratelimit import PacingBucket
from enrich.ratelimit.bucket import UNSEEN_FOR


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
    bucket = PacingBucket(capacity, per_seconds, now=0.0)
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
    bucket = PacingBucket(60, 60, now=0.0)
    bucket.take(60 - level_after_take, 0.0)
    assert bucket.wait_time(n, 0.0) == pytest.approx(wait)


def test_bucket_of_nothing_never_fits() -> None:
    assert PacingBucket(0, 60, now=0.0).wait_time(1, 0.0) == math.inf


def test_refund_clamps_at_capacity() -> None:
    bucket = PacingBucket(100, 60, now=0.0)
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
    bucket = PacingBucket(100, 60, now=0.0)
    bucket.take(ours_taken, 0.0)
    bucket.sync(remaining, 11.0, 0.0)  # a minute bucket ignores reset: it refills continuously
    assert bucket.level(0.0) == level


def test_fixed_window_bucket_waits_for_its_reset() -> None:
    day = PacingBucket(1000, 86_400, now=0.0, fixed_window=True)
    day.sync(0, 3600.0, 0.0)
    assert day.wait_time(1, 10.0) == pytest.approx(3590.0)
    assert day.level(3599.0) == 0  # no trickle before the reset
    assert day.level(3600.0) == 1000
    assert day.wait_time(1, 3600.0) == 0.0


def test_set_capacity_clamps_level_and_changes_rate() -> None:
    bucket = PacingBucket(120, 60, now=0.0)
    bucket.set_capacity(60, 0.0)
    assert bucket.level(0.0) == 60
    bucket.take(60, 0.0)
    assert bucket.wait_time(1, 0.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("counted", "sent", "settled_at", "at", "level"),
    [
        # A full bucket's provider twin stays full until the first request arrives there: no
        # refill until an answer shows it has (the answers of all 60 came back at 0.2 s) ...
        (0, 60, None, 0.5, 0.0),
        (0, 60, 0.2, 0.2, 0.0),
        (0, 60, 0.2, 1.5, 1.3),
        # ... or UNSEEN_FOR has passed (by then a request has arrived, or never will).
        (0, 60, None, UNSEEN_FOR + 0.5, 0.5),
        (0, 60, None, UNSEEN_FOR + 30, 30.0),
        # Far below full, units in flight change nothing.
        (50, 1, None, 0.0, 9.0),
        (50, 1, None, 0.5, 9.5),
    ],
)
def test_sent_units_hold_the_refill_of_a_full_bucket_until_seen(
    counted: float, sent: int, settled_at: float | None, at: float, level: float
) -> None:
    bucket = PacingBucket(60, 60, now=0.0)
    bucket.take(counted, 0.0)  # the provider has counted these
    for _ in range(sent):
        bucket.send(1, 0.0)
    if settled_at is not None:
        for _ in range(sent):
            bucket.settle(1, settled_at)
    assert bucket.level(at) == pytest.approx(level)
    assert bucket.unseen == (0 if settled_at is not None or at >= UNSEEN_FOR else sent)


def test_a_refund_does_not_fill_what_is_unseen() -> None:
    bucket = PacingBucket(100, 60, now=0.0)
    bucket.send(30, 0.0)
    bucket.refund(50, 0.0)
    assert bucket.level(0.0) == 70  # the 30 may still be on their way into a full bucket
    bucket.settle(30, 0.0)
    bucket.refund(50, 0.0)
    assert bucket.level(0.0) == 100
