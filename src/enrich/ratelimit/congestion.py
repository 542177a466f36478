"""What 429s mean over time: :class:`Congestion` (one per controller), :func:`react` and
:class:`NoiseTest`.

:class:`Congestion` classifies each 429 with the evidence gathered so far (does the provider
report the minute's requests; does the share of unnamed 429s hold when we slow down), counts
every answer into its :class:`NoiseTest`, and takes a cut back when the test says it was noise.

:func:`react` turns a classified 429 (:class:`~enrich.ratelimit.throttle.Throttle`) into a
:class:`Reaction`: who waits and how long, which per-minute limit is cut, whether the request
is given back. Only a quota signal slows everyone down; a per-minute limit is full again within
its minute, so no hint makes everyone wait longer than that, and only a daily quota may end the
run.

A quota refuses what goes past it: slow down below it and its 429s stop. Noise (a proxy's 429s,
a provider's own load) refuses a share of requests whatever the rate. So after the limit was cut
on a 429 that named no limit, the answers to requests admitted *after* the cut say which it was:
if such 429s still come at about the share they came at before the cut, slowing down did not
reduce them, and they are noise (``holds``); if they all but stop, they were a quota
(``falls``). Once noise is known, its share is the baseline: such 429s are noise while their
share stays near it, and a share well above it is a quota signal again.

Pure: it counts what the caller tells it; :func:`~enrich.ratelimit.throttle.classify_429` turns
its :attr:`NoiseTest.trend` into a verdict, and the rate controller acts on both.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from enrich.ratelimit.adaptive import AdaptiveLimit
from enrich.ratelimit.headers import RateSnapshot
from enrich.ratelimit.limits import MINUTE, LimitName
from enrich.ratelimit.throttle import Throttle, Trend, classify_429

__all__ = ["Congestion", "NoiseTest", "Reaction", "react"]

#: Everyone's pause after a quota 429 that gives no hint.
DEFAULT_PAUSE = 1.0


@dataclass(frozen=True, slots=True)
class Reaction:
    """What the controller does about one 429.

    ``pause``: seconds everyone waits (0: only the request's own retry waits). ``daily``: the
    pause is a daily quota's reset (``acquire`` raises when it is too far). ``lower``: the
    per-minute limit to cut (and whose bucket the server has emptied); ``confirmed``: whether
    the 429 is known to be that quota (else the cut is tested, :class:`NoiseTest`). ``refund``:
    the server did not count the request against a limit of requests.
    """

    pause: float = 0.0
    daily: bool = False
    lower: LimitName | None = None
    confirmed: bool = True
    refund: bool = False


def react(throttle: Throttle, *, testing: bool = False) -> Reaction:
    """The controller's :class:`Reaction` to a classified 429.

    Noise and the provider's load: the request is given back, nobody waits. A 429 that names
    no limit while a cut is being tested (``testing``) is that test's evidence, and does the
    same. A daily quota: everyone waits for its reset (``inf`` when unknown). The minute's
    tokens: everyone waits for the bucket's reset, else the hint, at most a minute, and that
    limit is cut. The minute's requests, or a 429 that names no limit (taken as them): everyone
    waits for the hint (else a second), at most a minute, and that limit is cut.
    """
    hint = throttle.retry_after
    pause = DEFAULT_PAUSE if hint is None else hint
    match throttle.limit:
        case "noise" | "capacity":
            return Reaction(refund=True)
        case "unknown" if testing:
            return Reaction(refund=True)
        case "requests_per_day" | "tokens_per_day":
            reset = throttle.resets_in
            return Reaction(max(pause, math.inf if reset is None else reset), daily=True)
        case "tokens_per_minute":
            reset = throttle.resets_in
            wait = pause if reset is None else reset
            return Reaction(min(wait, MINUTE), lower="tokens_per_minute", refund=True)
        case limit:
            confirmed = limit == "requests_per_minute"
            return Reaction(min(pause, MINUTE), lower="requests_per_minute", confirmed=confirmed)


class NoiseTest:
    """Measures the share of unnamed 429s among answers, and tests it across a cut.

    ``SAMPLE`` answers make a share: the last ones before a cut, and the first ones to requests
    admitted after it. The share before is taken over at least ``SAMPLE`` answers (fewer
    answers count as that many), so a run's first 429s do not pass for a high share. A cut
    ``holds`` when at least two answers after it were such 429s and their share is at least
    half the share before; above ``MAX_SHARE`` no share passes for noise.
    """

    SAMPLE = 100
    MAX_SHARE = 0.4
    HOLD_RATIO = 0.5

    __slots__ = ("_after", "_baseline", "_before", "_from_seq", "_recent", "_refused")

    def __init__(self) -> None:
        self._recent: deque[bool] = deque(maxlen=self.SAMPLE)
        self._refused = 0  # unnamed 429s among the recent answers
        self._baseline: float | None = None
        self._from_seq: int | None = None  # a test is open for requests admitted from here
        self._before = 0.0
        self._after = [0, 0]  # answers, unnamed 429s among them

    @property
    def baseline(self) -> float | None:
        """The share of noise last measured, ``None`` until a test has held."""
        return self._baseline

    @property
    def testing(self) -> bool:
        """Whether a cut is being tested (further unnamed 429s are its evidence, not events)."""
        return self._from_seq is not None

    def share(self) -> float:
        """The share of unnamed 429s among the last ``SAMPLE`` answers (at least that many)."""
        return self._refused / max(len(self._recent), self.SAMPLE)

    @property
    def trend(self) -> Trend:
        """``holds`` while the recent share is within the noise baseline's spread, else
        ``unknown`` (a test's own verdict comes from :meth:`answered`)."""
        base = self._baseline
        if base is None:
            return "unknown"
        spread = 3 * math.sqrt(max(base * (1 - base), 0.01) / self.SAMPLE)
        return "holds" if self.share() <= base + spread else "unknown"

    def cut(self, next_seq: int) -> None:
        """The limit was cut on an unnamed 429; requests from ``next_seq`` on test it."""
        if self._from_seq is None:
            self._from_seq, self._before, self._after = next_seq, self.share(), [0, 0]

    def answered(self, seq: int, refused: bool) -> Trend:
        """Count an answer to request ``seq`` (``refused``: an unnamed 429).

        Returns a test's verdict when this answer completes it (``holds``: noise, undo the cut;
        ``falls``: a quota, keep it), else ``unknown``.
        """
        recent = self._recent
        if len(recent) == recent.maxlen:
            self._refused -= recent[0]
        recent.append(refused)
        self._refused += refused
        start = self._from_seq
        if start is None or seq < start:
            return "unknown"
        after = self._after
        after[0] += 1
        after[1] += refused
        if after[0] < self.SAMPLE:
            return "unknown"
        self._from_seq = None
        share = after[1] / after[0]
        if after[1] >= 2 and share >= self.HOLD_RATIO * self._before and share <= self.MAX_SHARE:
            self._baseline = share
            return "holds"
        return "falls"


class Congestion:
    """The 429s one controller has seen, and what they taught it about ``requests`` (the
    per-minute requests limit, the one unnamed 429s are taken as).

    ``noise`` counts the 429s taken as noise (the provider's load included), ``undone`` the cuts
    taken back because slowing down did not reduce the share of unnamed 429s.
    """

    __slots__ = ("_adaptive", "_requests", "_test", "noise", "reports_requests", "undone")

    def __init__(self, requests: AdaptiveLimit, *, adaptive: bool = True) -> None:
        self._requests = requests
        self._adaptive = adaptive
        self._test = NoiseTest()
        #: Whether the provider's headers have described the minute's requests bucket.
        self.reports_requests = False
        self.noise = 0
        self.undone = 0

    @property
    def testing(self) -> bool:
        """Whether a cut is under test."""
        return self._test.testing

    def classify(
        self, code: str | None, snap: RateSnapshot, *, retry_after: float | None, reserved: int
    ) -> Throttle:
        """:func:`~enrich.ratelimit.throttle.classify_429` with what is known so far."""
        throttle = classify_429(
            code,
            snap,
            retry_after=retry_after,
            reserved=reserved,
            reports_requests=self.reports_requests,
            trend=self._test.trend,
        )
        self.noise += not throttle.quota
        return throttle

    def answered(self, seq: int, snap: RateSnapshot, throttle: Throttle | None) -> bool:
        """Count an answer to request ``seq`` (``throttle``: its 429, classified); whether the
        requests limit changed (a cut taken back)."""
        self.reports_requests |= snap.remaining_requests_minute is not None
        unnamed = throttle is not None and throttle.limit in ("unknown", "noise")
        verdict = self._test.answered(seq, unnamed)
        if verdict == "falls":
            self._requests.confirm()
        elif verdict == "holds" and self._adaptive and self._requests.undo():
            self.undone += 1
            return True
        return False

    def cut(self, next_seq: int, throttle: Throttle) -> None:
        """The requests limit was cut on ``throttle``; test the cut if the 429 named no limit."""
        if throttle.limit == "unknown":
            self._test.cut(next_seq)
