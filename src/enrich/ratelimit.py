"""The process-wide rate controller, and the rate-limit headers it learns from.

One :class:`RateController` is shared by every request the process sends. Before a request, the
caller awaits :meth:`RateController.acquire` with the tokens the request reserves (prompt estimate
+ ``max_completion_tokens``, as Cerebras reserves them); after it, the caller hands the
:class:`Permit` back to :meth:`RateController.release` with what the server said. Each attempt of
a retried request acquires and releases its own permit.

What it limits: requests in flight (a plain cap), and the provider's buckets (requests and
tokens per minute, requests and tokens per day), each a :class:`~enrich.buckets.TokenBucket`. A
per-minute limit is a ceiling ``min(configured, server-reported)``; in adaptive mode the
effective limit under it backs off on 429s and probes back up
(:class:`~enrich.buckets.AdaptiveLimit`), which is how an RPM the provider never reports in headers
is learned. A daily quota that is gone raises :class:`~enrich.errors.QuotaExhausted` from
``acquire`` rather than waiting for hours.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from enrich.buckets import (
    AdaptiveLimit,
    RateSnapshot,
    TokenBucket,
    parse_rate_headers,
    parse_retry_after,
)
from enrich.errors import QuotaExhausted

__all__ = [
    "Permit",
    "RateController",
    "RateSnapshot",
    "RateStats",
    "parse_rate_headers",
    "throttle_kind",
]

MINUTE = 60.0
DAY = 86_400.0
# The head waiter sleeps at most this long at a time, so a limit change or a raised in-flight
# cap is seen promptly without racing the injected sleep against a wake-up event.
_MAX_NAP = 0.5
# After a 429 with no retry hint everyone pauses this long; for a queue_exceeded 429 (the
# provider's capacity, not our quota) that pause is the whole response.
_CAPACITY_PAUSE = 1.0

ThrottleKind = Literal["capacity", "requests", "tokens", "requests_day", "tokens_day"]


class _Keep(enum.Enum):
    KEEP = "keep"


_Limit = float | Literal[_Keep.KEEP] | None  # None: no limit; KEEP: leave as it is
_NO_HEADERS = RateSnapshot()


@dataclass(slots=True)
class Permit:
    """One admitted request: what it reserved, and its admission number and time."""

    tokens: int
    seq: int
    acquired_at: float
    released: bool = False


@dataclass(frozen=True, slots=True)
class RateStats:
    """Counters of a controller; ``waited_s`` sums every caller's time spent waiting."""

    acquired: int
    in_flight: int
    throttled: int
    backoffs: int
    waited_s: float
    effective_rpm: float | None
    effective_tpm: float | None


def throttle_kind(code: str | None, snap: RateSnapshot, tokens: int) -> ThrottleKind:
    """Which limit a 429 hit, from its error ``code`` and the headers that came with it.

    Cerebras uses one code for per-minute and per-day request quotas and, it seems, for per-minute
    and per-day token quotas; the headers tell them apart. A token 429 while the minute bucket
    still holds twice this request and a quarter of its limit can only be the daily token quota
    (for which no header exists).
    """
    if code == "queue_exceeded":
        return "capacity"
    if snap.remaining_requests_day is not None and snap.remaining_requests_day < 1:
        return "requests_day"
    if snap.remaining_tokens_day is not None and snap.remaining_tokens_day < tokens:
        return "tokens_day"
    left = snap.remaining_tokens_minute
    if code == "token_quota_exceeded" or (code is None and left is not None and left < tokens):
        limit = snap.limit_tokens_minute
        if left is not None and left >= 2 * tokens and (limit is None or left >= limit / 4):
            return "tokens_day"
        return "tokens"
    return "requests"


class RateController:
    """Admits requests under an in-flight cap and the provider's rate limits; see the module doc.

    Waiters are served first come, first served: while anyone waits, newcomers queue behind
    them. Only the head of the queue sleeps, in naps of at most half a second, re-checking every
    limit after each. When nobody waits and everything fits, ``acquire`` returns without
    suspending. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        *,
        max_in_flight: int,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        requests_per_day: float | None = None,
        tokens_per_day: float | None = None,
        adaptive: bool = True,
        max_wait_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._adaptive = adaptive
        self._max_in_flight = 1
        self._max_wait = max_wait_s
        # Daily limits never adapt; they only take the min of configured and server-reported.
        self._limits = [AdaptiveLimit(None, per_seconds=p) for p in (MINUTE, MINUTE, DAY, DAY)]
        self._rpm_limit, self._tpm_limit, self._rpd_limit, self._tpd_limit = self._limits
        self._buckets: list[TokenBucket | None] = [None, None, None, None]
        self._rpm: TokenBucket | None = None
        self._tpm: TokenBucket | None = None
        self._rpd: TokenBucket | None = None
        self._tpd: TokenBucket | None = None
        self._request_buckets: tuple[TokenBucket, ...] = ()
        self._token_buckets: tuple[TokenBucket, ...] = ()
        self._blocked_until = -math.inf
        self._blocked_which = "requests"
        self._lock = asyncio.Lock()
        self._slot_free: asyncio.Future[None] | None = None
        self._queued = 0
        self._in_flight = 0
        self._tokens_in_flight = 0
        self._seq = 0
        self._throttled = 0
        self._backoffs = 0
        self._waited = 0.0
        self.update_limits(
            max_in_flight=max_in_flight,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            requests_per_day=requests_per_day,
            tokens_per_day=tokens_per_day,
            max_wait_s=max_wait_s,
        )

    # -- admission ---------------------------------------------------------------------------

    async def acquire(self, tokens: int) -> Permit:
        """Wait for a slot and room in every bucket, then reserve one request and ``tokens``.

        Raises :class:`~enrich.errors.QuotaExhausted` when a daily quota is gone, or when the
        wait the limits demand (a daily bucket, a server's retry hint) exceeds ``max_wait_s``.
        """
        if not self._queued and self._in_flight < self._max_in_flight:
            now = self._clock()
            if now >= self._blocked_until and self._fits(tokens, now):
                return self._grant(tokens, now)
        return await self._acquire_queued(tokens)

    def _fits(self, tokens: int, now: float) -> bool:
        for bucket in self._request_buckets:
            if bucket.wait_time(1, now) > 0:
                return False
        return all(bucket.wait_time(tokens, now) <= 0 for bucket in self._token_buckets)

    def _grant(self, tokens: int, now: float) -> Permit:
        for bucket in self._request_buckets:
            bucket.take(1, now)
        for bucket in self._token_buckets:
            bucket.take(tokens, now)
        self._in_flight += 1
        self._tokens_in_flight += tokens
        self._seq += 1
        return Permit(tokens, self._seq - 1, now)

    async def _acquire_queued(self, tokens: int) -> Permit:
        self._queued += 1
        start = self._clock()
        try:
            async with self._lock:
                while True:
                    now = self._clock()
                    delay = self._delay(tokens, now)
                    if delay > 0:
                        await self._sleep(min(delay, _MAX_NAP))
                    elif self._in_flight >= self._max_in_flight:
                        self._slot_free = asyncio.get_running_loop().create_future()
                        try:
                            await self._slot_free
                        finally:
                            self._slot_free = None
                    else:
                        self._waited += now - start
                        return self._grant(tokens, now)
        finally:
            self._queued -= 1

    def _delay(self, tokens: int, now: float) -> float:
        delay = self._blocked_until - now
        if delay > self._max_wait:
            raise QuotaExhausted(self._blocked_which, delay if math.isfinite(delay) else None)
        if self._rpm is not None:
            delay = max(delay, self._rpm.wait_time(1, now))
        if self._tpm is not None:
            delay = max(delay, self._tpm.wait_time(tokens, now))
        for which, bucket, n in (("requests", self._rpd, 1), ("tokens", self._tpd, tokens)):
            if bucket is not None:
                wait = bucket.wait_time(n, now)
                if wait > self._max_wait:
                    raise QuotaExhausted(which, wait if math.isfinite(wait) else None)
                delay = max(delay, wait)
        return delay

    # -- feedback ----------------------------------------------------------------------------

    def release(
        self,
        permit: Permit,
        *,
        used_tokens: int | None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        """Hand a permit back with what the attempt produced; releasing twice is a no-op.

        ``used_tokens`` is the usage a response reported (``None`` when there is none): the
        reservation minus usage is refunded, or the excess charged. Without usage, an attempt the
        server answered with an error status gets its tokens back (a rejected request is not
        charged), except 408, whose work may have happened; a transport failure (``status``
        ``None``) keeps its reservation, since the server may have done the work.
        ``headers`` re-sync the buckets. On a 429, ``code`` says which limit was hit
        (:func:`throttle_kind`) and everyone waits: for ``retry_after`` (an explicit hint in
        seconds; when ``None``, read from the ``retry-after`` headers) or else a second, for the
        token bucket's reset, for the request bucket the 429 emptied to refill, or until a daily
        quota resets (``acquire`` then raises); in adaptive mode the per-minute limit that was
        hit is lowered too. ``queue_exceeded`` (capacity) lowers nothing.
        """
        if permit.released:
            return
        permit.released = True
        self._in_flight -= 1
        self._tokens_in_flight -= permit.tokens
        now = self._clock()
        if used_tokens is not None:
            self._charge(used_tokens - permit.tokens, now)
            if self._adaptive and (
                self._rpm_limit.on_success(1, now) | self._tpm_limit.on_success(used_tokens, now)
            ):
                self._apply_limits(now)
        elif status is not None and status != 408:
            self._charge(-permit.tokens, now)
        snap = parse_rate_headers(headers) if headers else _NO_HEADERS
        if headers:
            self._sync(snap, now)
        if status == 429:
            hint = retry_after if retry_after is not None else parse_retry_after(headers or {})
            self._on_throttle(permit, snap, code, hint, now)
        if self._slot_free is not None and not self._slot_free.done():
            self._slot_free.set_result(None)

    def _charge(self, delta: float, now: float) -> None:
        for bucket in self._token_buckets:
            if delta > 0:
                bucket.take(delta, now)
            elif delta < 0:
                bucket.refund(-delta, now)

    def _block(self, until: float, which: str) -> None:
        if until > self._blocked_until:
            self._blocked_until, self._blocked_which = until, which

    def _on_throttle(
        self, permit: Permit, snap: RateSnapshot, code: str | None, hint: float | None, now: float
    ) -> None:
        self._throttled += 1
        kind = throttle_kind(code, snap, permit.tokens)
        which = "tokens" if kind in ("tokens", "tokens_day") else "requests"
        pause = hint if hint is not None else _CAPACITY_PAUSE
        self._block(now + pause, which)
        if kind == "capacity":
            self._refund_request(now)
        elif kind == "requests_day":
            self._block(now + _or_inf(snap.reset_requests_day), which)
        elif kind == "tokens_day":
            # No header says when the daily token quota resets; assume the requests' day does.
            reset = snap.reset_tokens_day
            self._block(now + _or_inf(snap.reset_requests_day if reset is None else reset), which)
        elif kind == "requests":
            # Cerebras reports no per-minute request headers: its bucket is now empty, and the
            # RPM is learned here, from the rejections.
            self._lower(self._rpm_limit, self._rpm, permit.seq, 0.0, self._in_flight, now)
        else:
            self._refund_request(now)
            left = snap.remaining_tokens_minute
            self._lower(self._tpm_limit, self._tpm, permit.seq, left, self._tokens_in_flight, now)
            reset = snap.reset_tokens_minute
            self._block(now + (reset if reset is not None else pause), which)

    def _lower(
        self,
        limit: AdaptiveLimit,
        bucket: TokenBucket | None,
        seq: int,
        remaining: float | None,
        pending: float,
        now: float,
    ) -> None:
        if bucket is not None:
            bucket.sync(remaining if remaining is not None else 0.0, None, now)
        if self._adaptive and limit.on_throttle(seq, self._seq, now, pending=pending):
            self._backoffs += 1
            self._apply_limits(now)

    def _refund_request(self, now: float) -> None:
        for bucket in self._request_buckets:
            bucket.refund(1, now)

    def _sync(self, snap: RateSnapshot, now: float) -> None:
        fields = (
            (
                snap.limit_requests_minute,
                snap.remaining_requests_minute,
                snap.reset_requests_minute,
            ),
            (snap.limit_tokens_minute, snap.remaining_tokens_minute, snap.reset_tokens_minute),
            (snap.limit_requests_day, snap.remaining_requests_day, snap.reset_requests_day),
            (snap.limit_tokens_day, snap.remaining_tokens_day, snap.reset_tokens_day),
        )
        changed = False
        for limit, (server, _, _) in zip(self._limits, fields, strict=True):
            if server is not None and server != limit.server:
                limit.set_limits(configured=limit.configured, server=server)
                changed = True
        if changed:
            self._apply_limits(now)
        for bucket, (_, remaining, reset) in zip(self._buckets, fields, strict=True):
            if bucket is not None and (remaining is not None or reset is not None):
                bucket.sync(remaining, reset, now)

    # -- limits ------------------------------------------------------------------------------

    def _apply_limits(self, now: float) -> None:
        """Size every bucket to its limit's effective value, creating or dropping buckets."""
        regroup = False
        for i, limit in enumerate(self._limits):
            bucket, capacity = self._buckets[i], limit.effective
            if capacity is None:
                regroup |= bucket is not None
                self._buckets[i] = None
            elif bucket is None:
                period, fixed = (MINUTE, False) if i < 2 else (DAY, True)
                self._buckets[i] = TokenBucket(capacity, period, now, fixed_window=fixed)
                regroup = True
            elif bucket.capacity != capacity:
                bucket.set_capacity(capacity, now)
        if regroup:
            self._rpm, self._tpm, self._rpd, self._tpd = self._buckets
            self._request_buckets = tuple(b for b in (self._rpm, self._rpd) if b is not None)
            self._token_buckets = tuple(b for b in (self._tpm, self._tpd) if b is not None)

    def update_limits(
        self,
        *,
        max_in_flight: int | Literal[_Keep.KEEP] = _Keep.KEEP,
        requests_per_minute: _Limit = _Keep.KEEP,
        tokens_per_minute: _Limit = _Keep.KEEP,
        requests_per_day: _Limit = _Keep.KEEP,
        tokens_per_day: _Limit = _Keep.KEEP,
        max_wait_s: float | Literal[_Keep.KEEP] = _Keep.KEEP,
    ) -> None:
        """Change limits while running (``None``: no limit; omitted: unchanged); wakes waiters.

        A per-minute limit that adaptation had lowered stays lowered under a raised ceiling and
        climbs back as usual; one at its ceiling follows the new value at once.
        """
        values = (requests_per_minute, tokens_per_minute, requests_per_day, tokens_per_day)
        for value in values:
            if value is not None and value is not _Keep.KEEP and not value > 0:
                raise ValueError(f"rate limits must be positive or None, got {value}")
        if max_in_flight is not _Keep.KEEP:
            if max_in_flight < 1:
                raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
            self._max_in_flight = max_in_flight
        if max_wait_s is not _Keep.KEEP:
            self._max_wait = max_wait_s
        for limit, value in zip(self._limits, values, strict=True):
            if value is not _Keep.KEEP:
                limit.set_limits(configured=value, server=limit.server)
        self._apply_limits(self._clock())
        if self._slot_free is not None and not self._slot_free.done():
            self._slot_free.set_result(None)

    @property
    def stats(self) -> RateStats:
        """A snapshot of the counters and the effective per-minute limits."""
        return RateStats(
            acquired=self._seq,
            in_flight=self._in_flight,
            throttled=self._throttled,
            backoffs=self._backoffs,
            waited_s=self._waited,
            effective_rpm=self._rpm_limit.effective,
            effective_tpm=self._tpm_limit.effective,
        )


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else value
