"""The process-wide rate controller: admits requests under every limit, learns from responses.

One :class:`RateController` is shared by every request the process sends. Before a request, the
caller awaits :meth:`RateController.acquire` with the tokens the request reserves (prompt estimate
+ ``max_completion_tokens``, as Cerebras reserves them); after it, the caller hands the
:class:`Permit` back to :meth:`RateController.release` with what the server said. Each attempt of
a retried request acquires and releases its own permit.

What it limits: requests in flight (a plain cap), and each of the provider's limits
(:data:`~enrich.ratelimit.limits.PROVIDER_LIMITS`: requests and tokens per minute and per day),
each paced by a bucket (:mod:`~enrich.ratelimit.pacing`). A limit is a ceiling
``min(configured, server-reported)``; in adaptive mode the effective per-minute limit under it
backs off once per congestion event and climbs back
(:class:`~enrich.ratelimit.adaptive.AdaptiveLimit`), which is how an RPM the provider never
reports in headers is learned. What a 429 means (which limit, or noise) is decided by
:func:`~enrich.ratelimit.throttle.classify_429`, with the evidence of
:class:`~enrich.ratelimit.congestion.NoiseTest`. A daily quota that is gone raises
:class:`~enrich.errors.QuotaExhausted` from ``acquire`` rather than waiting for hours.
With a :class:`~enrich.ratelimit.share.FleetShare`, an admitted request also draws its request
and tokens from the process's share of a fleet's per-minute budget before it is sent.
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
from enrich.ratelimit.congestion import Congestion, react
from enrich.ratelimit.headers import RateSnapshot, parse_rate_headers, parse_retry_after
from enrich.ratelimit.limits import LimitName
from enrich.ratelimit.pacing import Paced
from enrich.ratelimit.share import FleetShare
from enrich.ratelimit.throttle import Throttle

__all__ = ["Permit", "RateController", "RateStats"]

# The head waiter sleeps at most this long at a time, so a limit change or a raised in-flight
# cap is seen promptly without racing the injected sleep against a wake-up event.
_MAX_NAP = 0.5


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
    shared: bool = False  # drawn from the fleet's share


@dataclass(frozen=True, slots=True)
class RateStats:
    """Counters of a controller; ``waited_s`` sums every caller's time spent waiting.

    ``throttled`` counts every 429, ``noise`` those taken as noise (not a quota), ``backoffs``
    the cuts of a limit and ``undone`` the cuts taken back when they turned out to be noise.
    """

    acquired: int
    in_flight: int
    throttled: int
    backoffs: int
    waited_s: float
    effective_rpm: float | None
    effective_tpm: float | None
    noise: int = 0
    undone: int = 0


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
        share: FleetShare | None = None,
    ) -> None:
        self._clock = clock
        self._share = share
        self._sleep = sleep
        self._adaptive = adaptive
        self._max_in_flight = 1
        self._max_wait = max_wait_s
        self._limits = Paced()
        self._rpm = self._limits.by_name["requests_per_minute"]
        self._congestion = Congestion(self._rpm.adaptive, adaptive=adaptive)
        self._blocked_until = -math.inf
        self._blocked_which = "requests"
        self._blocked_daily = False  # only a daily quota's wait may end the run
        self._lock = asyncio.Lock()
        self._slot_free: asyncio.Future[None] | None = None
        self._queued = self._in_flight = self._tokens_in_flight = self._seq = 0
        self._throttled = self._backoffs = 0
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
        wait a daily quota demands exceeds ``max_wait_s``. With a fleet share, the permit
        then waits for the request and ``tokens`` from it.
        """
        permit = await self._admit(tokens)
        if self._share is not None:
            try:
                await self._share.draw(tokens)
            except BaseException:
                self.release(permit, used_tokens=None)
                raise
            permit.shared = True
        return permit

    async def _admit(self, tokens: int) -> Permit:
        if not self._queued and self._in_flight < self._max_in_flight:
            now = self._clock()
            if now >= self._blocked_until and self._limits.fits(tokens, now):
                return self._grant(tokens, now)
        return await self._acquire_queued(tokens)

    def _grant(self, tokens: int, now: float) -> Permit:
        self._limits.take(tokens, now)
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
        if self._blocked_daily and delay > self._max_wait:
            raise QuotaExhausted(self._blocked_which, delay if math.isfinite(delay) else None)
        for spec, bucket in self._limits.buckets:
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
        ``headers`` re-sync the buckets. A 429 is classified
        (:func:`~enrich.ratelimit.throttle.classify_429`; ``retry_after`` in seconds, else the
        ``retry-after`` headers) and acted on as :func:`~enrich.ratelimit.congestion.react`
        says: noise slows nobody down, a quota signal makes everyone wait and, in adaptive mode,
        lowers the per-minute limit it hit, once per congestion event.
        """
        if permit.released:
            return
        permit.released = True
        if permit.shared and self._share is not None:
            self._share.settle(permit.tokens, used_tokens, status)
        self._in_flight -= 1
        self._tokens_in_flight -= permit.tokens
        now = self._clock()
        limits = self._limits
        limits.settle(permit.tokens, now)
        if used_tokens is not None:
            limits.charge(used_tokens - permit.tokens, now)
            if self._adaptive:
                changed = False
                for limit in limits.adapting:
                    changed |= limit.adaptive.on_success(limit.spec.cost(used_tokens), now)
                if changed:
                    limits.apply(now)
        elif status is not None and status != 408:
            limits.charge(-permit.tokens, now)
            if status != 429:
                self._rpm.adaptive.on_answered(1, now)
        snap = parse_rate_headers(headers) if headers else _NO_HEADERS
        if headers:
            limits.sync(snap, now)
        throttle = None
        if status == 429:
            hint = retry_after if retry_after is not None else parse_retry_after(headers or {})
            throttle = self._congestion.classify(
                code, snap, retry_after=hint, reserved=permit.tokens
            )
        if status is not None and self._congestion.answered(permit.seq, snap, throttle):
            limits.apply(now)
        if throttle is not None:
            self._on_throttle(permit, snap, throttle, now)
        if self._slot_free is not None and not self._slot_free.done():
            self._slot_free.set_result(None)

    def _on_throttle(
        self, permit: Permit, snap: RateSnapshot, throttle: Throttle, now: float
    ) -> None:
        self._throttled += 1
        act = react(throttle, testing=self._congestion.testing)
        if act.refund:
            self._limits.refund_request(now)
        if act.pause > 0:
            until = now + act.pause
            if until > self._blocked_until:
                self._blocked_until, self._blocked_which = until, throttle.unit
                self._blocked_daily = act.daily
        if act.lower is not None:
            limit = self._limits.by_name[act.lower]
            tokens = act.lower == "tokens_per_minute"
            left = snap.remaining_tokens_minute if tokens else None
            if limit.bucket is not None and act.confirmed:
                # A quota said its bucket is empty; an unnamed 429 may be noise, and the cut
                # is tested at once with what the bucket holds.
                limit.bucket.sync(left or 0.0, None, now)
            pending = self._tokens_in_flight if tokens else self._in_flight
            if self._adaptive and limit.adaptive.on_throttle(
                permit.seq,
                self._seq,
                now,
                pending=pending,
                hold=throttle.retry_after or 0.0,
                confirmed=act.confirmed,
            ):
                self._backoffs += 1
                self._congestion.cut(self._seq, throttle)
                self._limits.apply(now)

    # -- limits ------------------------------------------------------------------------------

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
        named: dict[LimitName, _Setting] = {
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
            "requests_per_day": requests_per_day,
            "tokens_per_day": tokens_per_day,
        }
        values = {name: value for name, value in named.items() if value is not _Keep.KEEP}
        for value in values.values():
            if value is not None and not value > 0:
                raise ValueError(f"rate limits must be positive or None, got {value}")
        if max_in_flight is not _Keep.KEEP:
            if max_in_flight < 1:
                raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
            self._max_in_flight = max_in_flight
        if max_wait_s is not _Keep.KEEP:
            self._max_wait = max_wait_s
        self._limits.configure(values, self._clock())
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
            effective_rpm=self._rpm.adaptive.effective,
            effective_tpm=self._limits.by_name["tokens_per_minute"].adaptive.effective,
            noise=self._congestion.noise,
            undone=self._congestion.undone,
        )
