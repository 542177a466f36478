"""The client-side token bucket that paces requests: :class:`PacingBucket`.

It mirrors one of the provider's buckets (requests or tokens, per minute or per day) from this
side, so a request waits here instead of being refused there. (The simulator's bucket in
:mod:`enrich.sim` is the server side of the same idea, and a separate class.)

Pure: every method takes ``now`` from the caller (any monotonic clock, in seconds), nothing
sleeps and nothing does IO, so the controller can be tested with a fake clock and the numbers
checked by hand.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["PacingBucket"]

# Slack for float rounding: a bucket that refilled to 0.9999999999 of a token counts as one token.
_EPS = 1e-9
#: Seconds after which a request sent and not yet answered is taken to have reached the provider.
UNSEEN_FOR = 1.0


class PacingBucket:
    """A bucket of ``capacity`` units that refills continuously at ``capacity / per_seconds``.

    It starts full, as the provider's bucket is for an account nobody has used. The level is a
    real number at most ``capacity``; it can go *below zero* in exactly one way: :meth:`take` always
    subtracts what it is given, so admitting a request larger than the capacity (allowed once the
    bucket is full, see :meth:`wait_time`) or charging more usage than was reserved leaves a debt
    that refill pays back before anything else fits.

    The provider counts a request when it *arrives*, a moment after it was admitted here, and a
    full bucket does not refill: until the first request from a full bucket arrives there, the
    provider's bucket stays full while ours, already charged, refills. Counted as is, that moment
    (a first request's connection set-up, some 0.15 s) becomes requests the provider refuses. So
    units taken with :meth:`send` are *unseen* until :meth:`settle` says an answer came back (the
    latest the provider can have counted them) or ``UNSEEN_FOR`` seconds have passed (by then a
    request has arrived, or is lost): the level refills only up to ``capacity`` minus the unseen
    units, as if they still sat in the provider's full bucket. Far below full this changes
    nothing; leaving full, the bucket forgoes the refill of one answer's latency (at most
    ``UNSEEN_FOR``) instead of overshooting the provider's.

    A ``fixed_window`` bucket models a quota the provider resets at a fixed time (the daily ones):
    once :meth:`sync` has told it when the window resets, it does not refill before that moment
    and is full from then on. Until it knows, it refills continuously, the best estimate there is.
    """

    __slots__ = (
        "_capacity",
        "_fixed_window",
        "_full_at",
        "_level",
        "_period",
        "_rate",
        "_stamp",
        "_unseen",
        "_unseen_total",
    )

    def __init__(
        self, capacity: float, per_seconds: float, now: float, *, fixed_window: bool = False
    ) -> None:
        if capacity < 0 or not per_seconds > 0:
            raise ValueError(f"bad bucket: capacity={capacity}, per_seconds={per_seconds}")
        self._capacity = float(capacity)
        self._period = float(per_seconds)
        self._rate = self._capacity / self._period
        self._level = self._capacity
        self._stamp = now
        self._fixed_window = fixed_window
        self._full_at: float | None = None
        # Units sent that no answer has shown the provider counted yet: [expiry, units], oldest
        # first, and their sum.
        self._unseen: deque[list[float]] = deque()
        self._unseen_total = 0.0

    @property
    def capacity(self) -> float:
        """Units the bucket holds when full (one period's worth)."""
        return self._capacity

    @property
    def per_seconds(self) -> float:
        """Seconds an empty bucket takes to refill."""
        return self._period

    @property
    def unseen(self) -> float:
        """Units :meth:`send` took that the provider may not have counted yet."""
        return self._unseen_total

    @property
    def full_at(self) -> float | None:
        """When a fixed-window bucket is full again, if a server has said so."""
        return self._full_at

    def _advance(self, now: float) -> None:
        unseen = self._unseen
        while unseen and unseen[0][0] <= now:
            expiry, n = unseen.popleft()
            self._refill(expiry)  # up to capacity less the units unseen until then
            self._unseen_total = self._unseen_total - n if unseen else 0.0
        self._refill(now)

    def _refill(self, now: float) -> None:
        elapsed = now - self._stamp
        if elapsed <= 0:
            return  # a clock that steps back (or no time passed) refills nothing
        self._stamp = now
        if self._full_at is not None:
            if now >= self._full_at:
                self._full_at = None
                self._level = max(self._level, self._capacity)
                return
            if self._fixed_window:
                return
        top = self._capacity - self._unseen_total
        if self._level < top:
            self._level = min(top, self._level + elapsed * self._rate)

    def level(self, now: float) -> float:
        """Units available at ``now`` (negative while a debt is being paid back)."""
        self._advance(now)
        return self._level

    def wait_time(self, n: float, now: float) -> float:
        """Seconds from ``now`` until ``n`` units fit; 0.0 if they fit now.

        A request larger than the capacity is treated as needing the whole capacity: it goes
        through once the bucket is full (and leaves a debt) instead of never. Only a bucket of
        capacity 0 answers ``inf``.
        """
        if self._capacity <= 0:
            return 0.0 if n <= 0 else math.inf
        self._advance(now)
        need = min(n, self._capacity)
        if self._level >= need - _EPS * max(1.0, need):
            return 0.0
        if self._full_at is not None and self._fixed_window:
            return self._full_at - now
        return (need - self._level) / self._rate

    def take(self, n: float, now: float) -> None:
        """Remove ``n`` units unconditionally (check :meth:`wait_time` first)."""
        self._advance(now)
        self._level -= n

    def send(self, n: float, now: float) -> None:
        """:meth:`take` ``n`` units for a request the provider has not counted yet (it counts it
        on arrival); they stay unseen, holding refill below ``capacity - unseen``, until
        :meth:`settle`."""
        self.take(n, now)
        if n > 0:
            self._unseen.append([now + UNSEEN_FOR, n])
            self._unseen_total += n

    def settle(self, n: float, now: float) -> None:
        """An answer came back for ``n`` units :meth:`send` took: the provider has counted them.

        The oldest unseen units are settled (answers need not come in order; the count is what
        bounds the refill).
        """
        self._advance(now)
        unseen = self._unseen
        while n > 0 and unseen:
            oldest = unseen[0]
            part = min(n, oldest[1])
            oldest[1] -= part
            self._unseen_total -= part
            n -= part
            if oldest[1] <= 0:
                unseen.popleft()
        if not unseen:
            self._unseen_total = 0.0  # no float dust left behind

    def refund(self, n: float, now: float) -> None:
        """Give back ``n`` units, never beyond the capacity less what is unseen."""
        self._advance(now)
        self._level = max(self._level, min(self._capacity - self._unseen_total, self._level + n))

    def sync(self, remaining: float | None, reset_s: float | None, now: float) -> None:
        """Adopt what a server reports: ``remaining`` units, full again in ``reset_s`` seconds.

        The level only ever goes down (``min`` of ours and the server's): the server also counts
        other clients of the account, while ours already counts requests the server has not seen.
        For a fixed-window bucket ``reset_s`` is when the window resets. A continuous bucket
        ignores it: ``remaining`` already says how full the bucket is, and the provider's minute
        reset is not "time until full" (its documented example has 99.9998 % remaining and 11 s
        to reset).
        """
        self._advance(now)
        if remaining is not None:
            self._level = min(self._level, remaining)
        if reset_s is not None and self._fixed_window:
            self._full_at = now + reset_s

    def set_capacity(self, capacity: float, now: float) -> None:
        """Change the capacity (and with it the refill rate); the level is clamped, not raised."""
        if capacity < 0:
            raise ValueError(f"bad bucket capacity: {capacity}")
        self._advance(now)
        self._capacity = float(capacity)
        self._rate = self._capacity / self._period
        self._level = min(self._level, self._capacity)
