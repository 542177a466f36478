"""The process-wide rate controller: admits requests under every limit, learns from responses.

One :class:`RateController` is shared by every request the process sends. Before a request, the
caller awaits :meth:`RateController.acquire` with the tokens the request reserves (prompt estimate
+ ``max_completion_tokens``, as Cerebras reserves them); after it, the caller hands the
:class:`Permit` back to :meth:`RateController.release` with what the server said. Each attempt of
a retried request acquires and releases its own permit.

What it limits: requests in flight (a plain cap), and each of the provider's limits
(:data:`~enrich.ratelimit.limits.PROVIDER_LIMITS`: requests and tokens per minute and per day),
each paced by a :class:`~enrich.ratelimit.bucket.PacingBucket`. A limit is a ceiling
``min(configured, server-reported)``; in adaptive mode the effective per-minute limit under it
backs off on 429s and probes back up (:class:`~enrich.ratelimit.adaptive.AdaptiveLimit`), which is
how an RPM the provider never reports in headers is learned. Which limit a 429 hit is decided by
:func:`~enrich.ratelimit.throttle.classify_429`. A daily quota that is gone raises
:class:`~enrich.errors.QuotaExhausted` from ``acquire`` rather than waiting for hours.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from enrich.errors import QuotaExhausted
from enrich.ratelimit.adaptive import AdaptiveLimit
from enrich.ratelimit.bucket import PacingBucket
from enrich.ratelimit.headers import RateSnapshot, parse_rate_headers, parse_retry_after
from enrich.ratelimit.limits import PROVIDER_LIMITS, LimitName, ProviderLimit
from enrich.ratelimit.throttle import classify_429

__all__ = ["Permit", "RateController", "RateStats"]

# The head waiter sleeps at most this long at a time, so a limit change or a raised in-flight
# cap is seen promptly without racing the injected sleep against a wake-up event.
_MAX_NAP = 0.5
# After a 429 with no retry hint everyone pauses this long; for a queue_exceeded 429 (the
# provider's capacity, not our quota) that pause is the whole response.
_CAPACITY_PAUSE = 1.0


class _Keep(enum.Enum):
    KEEP = "keep"


_Setting = float | Literal[_Keep.KEEP] | None  # None: no limit; KEEP: leave as it is
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


@dataclass(slots=True, eq=False)
class _Limit:
    """One provider limit inside a controller: its value and the bucket sized to it.

    ``adaptive.effective`` is the value in force (``None``: no limit, and no bucket).
    """

    spec: ProviderLimit
    adaptive: AdaptiveLimit
    bucket: PacingBucket | None = None


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
        self._limits = tuple(
            _Limit(spec, AdaptiveLimit(None, per_seconds=spec.period)) for spec in PROVIDER_LIMITS
        )
        self._by_name: dict[LimitName, _Limit] = {limit.spec.name: limit for limit in self._limits}
        # Daily limits never adapt; they only take the min of configured and server-reported.
        self._adapting = tuple(limit for limit in self._limits if limit.spec.adapts)
        # The limits that have a bucket now, with it (rebuilt when one comes or goes).
        self._paced: tuple[tuple[ProviderLimit, PacingBucket], ...] = ()
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
        return all(bucket.wait_time(spec.cost(tokens), now) <= 0 for spec, bucket in self._paced)

    def _grant(self, tokens: int, now: float) -> Permit:
        for spec, bucket in self._paced:
            bucket.take(spec.cost(tokens), now)
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
        for spec, bucket in self._paced:
            wait = bucket.wait_time(spec.cost(tokens), now)
            if spec.fixed_window and wait > self._max_wait:
                # A quota that resets at a fixed time may be hours away: end the run instead.
                raise QuotaExhausted(spec.unit, wait if math.isfinite(wait) else None)
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
        ``headers`` re-sync the buckets. On a 429, ``code`` and the headers say which limit was
        hit (:func:`~enrich.ratelimit.throttle.classify_429`) and everyone waits: for
        ``retry_after`` (an explicit hint in seconds; when ``None``, read from the
        ``retry-after`` headers) or else a second, for the token bucket's reset, for the request
        bucket the 429 emptied to refill, or until a daily quota resets (``acquire`` then
        raises); in adaptive mode the per-minute limit that was hit is lowered too.
        ``queue_exceeded`` (capacity) lowers nothing.
        """
        if permit.released:
            return
        permit.released = True
        self._in_flight -= 1
        self._tokens_in_flight -= permit.tokens
        now = self._clock()
        if used_tokens is not None:
            self._charge(used_tokens - permit.tokens, now)
            if self._adaptive:
                changed = False
                for limit in self._adapting:
                    changed |= limit.adaptive.on_success(limit.spec.cost(used_tokens), now)
                if changed:
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
        for spec, bucket in self._paced:
            if spec.unit != "tokens":
                continue
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
        throttle = classify_429(code, snap, retry_after=hint, reserved=permit.tokens)
        which = throttle.unit
        pause = throttle.retry_after if throttle.retry_after is not None else _CAPACITY_PAUSE
        self._block(now + pause, which)
        hit = throttle.limit
        if hit == "capacity":
            self._refund_request(now)
        elif hit in ("requests_per_day", "tokens_per_day"):
            self._block(now + _or_inf(throttle.resets_in), which)
        elif hit == "tokens_per_minute":
            self._refund_request(now)
            left = snap.remaining_tokens_minute
            self._lower(self._by_name[hit], permit.seq, left, self._tokens_in_flight, now)
            reset = throttle.resets_in
            self._block(now + (reset if reset is not None else pause), which)
        else:
            # The minute's requests, or a 429 that names no limit, taken as them. Cerebras
            # reports no per-minute request headers: its bucket is now empty, and the RPM is
            # learned here, from the rejections.
            rpm = self._by_name["requests_per_minute"]
            self._lower(rpm, permit.seq, 0.0, self._in_flight, now)

    def _lower(
        self, limit: _Limit, seq: int, remaining: float | None, pending: float, now: float
    ) -> None:
        if limit.bucket is not None:
            limit.bucket.sync(remaining if remaining is not None else 0.0, None, now)
        if self._adaptive and limit.adaptive.on_throttle(seq, self._seq, now, pending=pending):
            self._backoffs += 1
            self._apply_limits(now)

    def _refund_request(self, now: float) -> None:
        for spec, bucket in self._paced:
            if spec.unit == "requests":
                bucket.refund(1, now)

    def _sync(self, snap: RateSnapshot, now: float) -> None:
        reported = [limit.spec.reported(snap) for limit in self._limits]
        changed = False
        for limit, (server, _, _) in zip(self._limits, reported, strict=True):
            if server is not None and server != limit.adaptive.server:
                limit.adaptive.set_limits(configured=limit.adaptive.configured, server=server)
                changed = True
        if changed:
            self._apply_limits(now)
        for limit, (_, remaining, reset) in zip(self._limits, reported, strict=True):
            if limit.bucket is not None and (remaining is not None or reset is not None):
                limit.bucket.sync(remaining, reset, now)

    # -- limits ------------------------------------------------------------------------------

    def _apply_limits(self, now: float) -> None:
        """Size every bucket to its limit's effective value, creating or dropping buckets."""
        regroup = False
        for limit in self._limits:
            bucket, capacity, spec = limit.bucket, limit.adaptive.effective, limit.spec
            if capacity is None:
                regroup |= bucket is not None
                limit.bucket = None
            elif bucket is None:
                limit.bucket = PacingBucket(
                    capacity, spec.period, now, fixed_window=spec.fixed_window
                )
                regroup = True
            elif bucket.capacity != capacity:
                bucket.set_capacity(capacity, now)
        if regroup:
            self._paced = tuple((x.spec, x.bucket) for x in self._limits if x.bucket is not None)

    def update_limits(
        self,
        *,
        max_in_flight: int | Literal[_Keep.KEEP] = _Keep.KEEP,
        requests_per_minute: _Setting = _Keep.KEEP,
        tokens_per_minute: _Setting = _Keep.KEEP,
        requests_per_day: _Setting = _Keep.KEEP,
        tokens_per_day: _Setting = _Keep.KEEP,
        max_wait_s: float | Literal[_Keep.KEEP] = _Keep.KEEP,
    ) -> None:
        """Change limits while running (``None``: no limit; omitted: unchanged); wakes waiters.

        A per-minute limit that adaptation had lowered stays lowered under a raised ceiling and
        climbs back as usual; one at its ceiling follows the new value at once.
        """
        values: dict[LimitName, _Setting] = {
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
            "requests_per_day": requests_per_day,
            "tokens_per_day": tokens_per_day,
        }
        for value in values.values():
            if value is not None and value is not _Keep.KEEP and not value > 0:
                raise ValueError(f"rate limits must be positive or None, got {value}")
        if max_in_flight is not _Keep.KEEP:
            if max_in_flight < 1:
                raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
            self._max_in_flight = max_in_flight
        if max_wait_s is not _Keep.KEEP:
            self._max_wait = max_wait_s
        for limit in self._limits:
            value = values[limit.spec.name]
            if value is not _Keep.KEEP:
                limit.adaptive.set_limits(configured=value, server=limit.adaptive.server)
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
            effective_rpm=self._by_name["requests_per_minute"].adaptive.effective,
            effective_tpm=self._by_name["tokens_per_minute"].adaptive.effective,
        )


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else value
