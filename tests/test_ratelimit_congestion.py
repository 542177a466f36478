"""What a 429 asks of the controller, and the test that tells a quota's 429s from noise."""

from __future__ import annotations

import math
import random

import pytest

from enrich.ratelimit import NoiseTest, Throttle
from enrich.ratelimit.congestion import Reaction, react


@pytest.mark.parametrize(
    ("throttle", "testing", "reaction"),
    [
        (Throttle("noise", 1.0), False, Reaction(refund=True)),
        (Throttle("capacity", 4.0), False, Reaction(refund=True)),
        # An unnamed 429 while a cut is tested is the test's evidence, nothing more.
        (Throttle("unknown", 1.0), True, Reaction(refund=True)),
        (
            Throttle("unknown", 2.0),
            False,
            Reaction(2.0, lower="requests_per_minute", confirmed=False),
        ),
        (Throttle("unknown"), False, Reaction(1.0, lower="requests_per_minute", confirmed=False)),
        (Throttle("requests_per_minute", 3.0), True, Reaction(3.0, lower="requests_per_minute")),
        # A long hint on a minute's limit is capped at the minute: never a daily quota.
        (
            Throttle("requests_per_minute", 600.0),
            False,
            Reaction(60.0, lower="requests_per_minute"),
        ),
        (
            Throttle("tokens_per_minute", None, 7.5),
            False,
            Reaction(7.5, lower="tokens_per_minute", refund=True),
        ),
        (
            Throttle("tokens_per_minute", 2.0, 900.0),
            False,
            Reaction(60.0, lower="tokens_per_minute", refund=True),
        ),
        (Throttle("requests_per_day", 1.0, 500.0), False, Reaction(500.0, daily=True)),
        (Throttle("tokens_per_day", None, None), False, Reaction(math.inf, daily=True)),
    ],
)
def test_react(throttle: Throttle, testing: bool, reaction: Reaction) -> None:
    assert react(throttle, testing=testing) == reaction


def run_test(before: list[bool], after: list[bool]) -> str:
    """Answers before a cut, the cut, answers to requests admitted after it; the verdict."""
    test = NoiseTest()
    seq = 0
    for refused in before:
        assert test.answered(seq, refused) == "unknown"
        seq += 1
    test.cut(seq)
    assert test.testing
    verdicts = []
    for refused in after:
        verdicts.append(test.answered(seq, refused))
        seq += 1
    assert not test.testing
    assert verdicts[:-1] == ["unknown"] * (len(after) - 1)
    return verdicts[-1]


def shares(share: float, n: int, seed: int = 0) -> list[bool]:
    rng = random.Random(seed)
    return [rng.random() < share for _ in range(n)]


@pytest.mark.parametrize(
    ("before", "after", "verdict"),
    [
        # Noise: about the same share whatever the rate.
        (shares(0.1, 200, 1), shares(0.1, 100, 2), "holds"),
        (shares(0.05, 200, 3), shares(0.05, 100, 4), "holds"),
        (shares(0.2, 200, 5), shares(0.2, 100, 6), "holds"),
        # A quota: once below it, its 429s stop.
        (shares(0.3, 200, 7), [False] * 100, "falls"),
        ([False] * 150 + [True] * 50, [False] * 99 + [True], "falls"),
        # A quota on top of noise: the share falls to the noise's.
        (shares(0.5, 200, 8), shares(0.1, 100, 9), "falls"),
        # More than MAX_SHARE refused after the cut is no noise.
        (shares(0.6, 200, 10), shares(0.6, 100, 11), "falls"),
        # The first 429 of a run: one in ten answers is no share to compare with.
        ([False] * 9 + [True], shares(0.1, 100, 12), "holds"),
    ],
)
def test_a_cut_holds_when_the_share_does_not_fall(
    before: list[bool], after: list[bool], verdict: str
) -> None:
    assert run_test(before, after) == verdict


def test_answers_to_requests_admitted_before_the_cut_are_not_evidence() -> None:
    test = NoiseTest()
    test.cut(50)
    for seq in range(50):
        assert test.answered(seq, True) == "unknown"
    assert test.testing


def test_the_baseline_makes_a_share_like_it_noise_and_a_higher_one_news() -> None:
    test = NoiseTest()
    assert test.trend == "unknown"
    run = shares(0.1, 200, 13)
    for seq, refused in enumerate(run):
        test.answered(seq, refused)
    test.cut(200)
    for seq, refused in enumerate(shares(0.1, 100, 14), start=200):
        test.answered(seq, refused)
    assert test.baseline is not None and 0.05 <= test.baseline <= 0.15
    assert test.trend == "holds"
    for seq in range(300, 400):  # a third refused: a quota on top of the noise
        test.answered(seq, seq % 3 == 0)
    assert test.trend == "unknown"


@pytest.mark.parametrize("share", [0.05, 0.1, 0.2])
def test_noise_is_told_from_a_quota_most_of_the_time(share: float) -> None:
    # The test's error rates over many random runs, not one lucky draw.
    rng = random.Random(share)
    held = sum(
        run_test(
            [rng.random() < share for _ in range(200)],
            [rng.random() < share for _ in range(100)],
        )
        == "holds"
        for _ in range(200)
    )
    assert held >= 0.8 * 200
