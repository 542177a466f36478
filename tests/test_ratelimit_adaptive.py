"""The adaptive limit: down once per congestion event toward what was accepted, back up on
successes, fast when a cut may have been a mistake."""

from __future__ import annotations

import pytest

from enrich.ratelimit import AdaptiveLimit


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
    later = AdaptiveLimit.WINDOW + 0.1
    assert limit.on_throttle(seq=10, next_seq=12, now=later, pending=800)  # admitted after it
    assert limit.effective == pytest.approx(720 * 0.9)


@pytest.mark.parametrize(
    ("seq", "now", "hold", "lowers"),
    [
        (10, 1.0, 0.0, False),  # admitted after the cut, but within the event's window
        (10, AdaptiveLimit.WINDOW - 0.01, 0.0, False),
        (10, AdaptiveLimit.WINDOW + 0.01, 0.0, True),
        (10, 5.0, 8.0, False),  # the server's retry-after widens the window
        (10, 8.01, 8.0, True),
        (9, 100.0, 0.0, False),  # admitted before the cut: the same overshoot, however late
    ],
)
def test_every_429_within_one_window_is_one_event(
    seq: int, now: float, hold: float, lowers: bool
) -> None:
    limit = AdaptiveLimit(1000)
    assert limit.on_throttle(seq=0, next_seq=10, now=0.0, pending=800, hold=hold)
    assert limit.on_throttle(seq=seq, next_seq=20, now=now, pending=800) is lowers


def test_successes_probe_slowly_past_a_known_quota() -> None:
    limit = AdaptiveLimit(100)
    limit.on_throttle(seq=0, next_seq=1, now=0.0, pending=50)
    assert limit.effective == pytest.approx(50)
    limit.on_success(50, now=1.0)  # one period's worth at the current limit: +5 % of ceiling
    assert limit.effective == pytest.approx(55)
    for i in range(1000):
        limit.on_success(1, now=2.0 + i)
    assert limit.effective == 100


def test_successes_climb_fast_far_below_the_known_quota() -> None:
    limit = AdaptiveLimit(100)
    limit.on_throttle(seq=0, next_seq=1, now=0.0, pending=100)  # the server took 100
    limit.effective = 40  # e.g. lowered by hand, far below 0.9 x 100
    limit.on_success(40, now=1.0)  # one period's worth: +50 % of the ceiling
    assert limit.effective == pytest.approx(90)
    limit.on_success(90, now=2.0)  # at 0.9 x 100: +5 %
    assert limit.effective == pytest.approx(95)


def test_a_cut_not_known_to_be_a_quota_holds_still_until_judged() -> None:
    limit = AdaptiveLimit(600)
    limit.on_throttle(seq=0, next_seq=1, now=0.0, pending=0, confirmed=False)
    assert limit.effective == pytest.approx(300)
    assert not limit.on_success(300, now=1.0)  # the test needs the cut rate to measure
    assert limit.effective == pytest.approx(300)
    limit.confirm()
    assert limit.on_success(300, now=2.0)


def test_the_floor_keeps_what_the_server_accepted_over_the_last_minute() -> None:
    limit = AdaptiveLimit(1000)
    for second in range(61):  # 600 accepted in a minute: 500 successes and 100 5xx
        for _ in range(8):
            limit.on_success(1, now=float(second))
        for _ in range(2):
            limit.on_answered(1, now=float(second))
    assert limit.floor(60.5) == pytest.approx(600)
    # A 429 that named no limit: never below what the server accepted (not 0.9 x 600).
    assert limit.on_throttle(seq=0, next_seq=1, now=60.5, confirmed=False)
    assert limit.effective == pytest.approx(600)
    # A named quota: the floor does not apply.
    assert limit.on_throttle(seq=1, next_seq=2, now=70.0)
    assert limit.effective == pytest.approx(0.9 * limit.observed(70.0))


def test_no_floor_before_a_whole_minute_nor_for_a_reported_limit() -> None:
    limit = AdaptiveLimit(1000)
    for second in range(30):
        limit.on_success(10, now=float(second))
    assert limit.floor(30.0) == 0.0  # the first burst is still in the count
    limit.set_limits(configured=1000, server=1000)
    for second in range(30, 90):
        limit.on_success(10, now=float(second))
    assert limit.floor(90.0) == 0.0


def test_undo_restores_the_limit_before_unconfirmed_cuts() -> None:
    limit = AdaptiveLimit(1000)
    limit.on_throttle(seq=0, next_seq=1, now=0.0, pending=600, confirmed=False)
    limit.on_throttle(seq=1, next_seq=2, now=10.0, pending=400, confirmed=False)
    assert limit.effective == pytest.approx(360)
    assert limit.undo()
    assert limit.effective == 1000
    assert not limit.undo()  # nothing left to undo


def test_confirm_keeps_the_cut_and_probes_slowly() -> None:
    limit = AdaptiveLimit(1000)
    limit.on_throttle(seq=0, next_seq=1, now=0.0, pending=900, confirmed=False)
    assert limit.effective == pytest.approx(810)
    limit.confirm()
    assert not limit.undo()
    assert limit.effective == pytest.approx(810)
    limit.on_success(1, now=1.0)  # at 0.9 of what the server took (900): slowly
    assert limit.effective == pytest.approx(810 + 0.05 * 1000 / 810)


def test_limit_takes_the_lower_of_configured_and_server() -> None:
    limit = AdaptiveLimit(1000)
    limit.set_limits(configured=1000, server=600)
    assert (limit.ceiling, limit.effective) == (600, 600)
    limit.set_limits(configured=2000, server=None)
    assert limit.effective == 2000  # it was at the ceiling: follows a raise at once
