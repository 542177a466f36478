"""The adaptive limit: down once per overshoot toward what was accepted, back up on successes."""

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
