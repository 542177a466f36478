"""Rate-limit arithmetic: token buckets, the adaptive limit, and what servers report about them.

Everything here is pure: every method takes ``now`` from the caller (any monotonic clock, in
seconds), nothing sleeps and nothing does IO, so the rate controller in :mod:`enrich.ratelimit`
can be tested with a fake clock and the numbers can be checked by hand.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple

# Slack for float rounding: a bucket that refilled to 0.9999999999 of a token counts as one token.
_EPS = 1e-9


class TokenBucket:
    """A bucket of ``capacity`` units that refills continuously at ``capacity / per_seconds``.

    It starts full, as the provider's bucket is for an account nobody has used. The level is a
    real number at most ``capacity``; it can go *below zero* in exactly one way: :meth:`take` always
    subtracts what it is given, so admitting a request larger than the capacity (allowed once the
    bucket is full, see :meth:`wait_time`) or charging more usage than was reserved leaves a debt
    that refill pays back before anything else fits.

    A ``fixed_window`` bucket models a quota the provider resets at a fixed time (the daily ones):
    once :meth:`sync` has told it when the window resets, it does not refill before that moment
    and is full from then on. Until it knows, it refills continuously, the best estimate there is.
    """

    __slots__ = ("_capacity", "_fixed_window", "_full_at", "_level", "_period", "_rate", "_stamp")

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

    @property
    def capacity(self) -> float:
        """Units the bucket holds when full (one period's worth)."""
        return self._capacity

    @property
    def per_seconds(self) -> float:
        """Seconds an empty bucket takes to refill."""
        return self._period

    @property
    def full_at(self) -> float | None:
        """When a fixed-window bucket is full again, if a server has said so."""
        return self._full_at

    def _advance(self, now: float) -> None:
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
        if self._level < self._capacity:
            self._level = min(self._capacity, self._level + elapsed * self._rate)

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

    def refund(self, n: float, now: float) -> None:
        """Give back ``n`` units, never beyond the capacity."""
        self._advance(now)
        self._level = min(self._capacity, self._level + n)

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


class AdaptiveLimit:
    """A per-period limit that backs off when throttled and probes back up (AIMD).

    ``effective`` never exceeds ``ceiling = min(configured, server)``, where ``server`` is the
    limit a server reported in its headers (``None`` for both: no limit). On a throttle it drops
    to ``max(effective * 0.5, min(effective * 0.9, accepted * 0.9))``, where ``accepted`` is
    what succeeded over the last period plus what is still in flight: the server just said it is
    empty, so what it accepted over one period is about its true limit. Only the first throttle
    among the requests admitted before a drop counts (``seq`` below the guard), so the burst of
    rejections from one overshoot lowers the limit once, not once per rejection. Every success
    then raises it by ``INCREASE * ceiling`` per period's worth of successes: it climbs back
    slowly, and the next overshoot is small.
    """

    DECREASE = 0.9
    MAX_DECREASE = 0.5
    INCREASE = 0.05
    FLOOR = 0.01  # of the ceiling: the limit never collapses to nothing

    __slots__ = (
        "_guard",
        "_period",
        "_sum",
        "_window",
        "ceiling",
        "configured",
        "effective",
        "server",
    )

    def __init__(self, configured: float | None, *, per_seconds: float = 60.0) -> None:
        self.configured = configured
        self.server: float | None = None
        self.ceiling = configured
        self.effective = configured
        self._period = per_seconds
        self._guard = 0
        self._window: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def set_limits(self, *, configured: float | None, server: float | None) -> None:
        """Change the configured or the server-reported limit.

        An effective limit at the old ceiling follows the new one (a raise takes effect at once);
        one that adaptation had lowered stays where it was, capped by the new ceiling.
        """
        old = self.ceiling
        known = [v for v in (configured, server) if v is not None]
        self.configured, self.server = configured, server
        self.ceiling = new = min(known) if known else None
        if new is None or self.effective is None or old is None or self.effective >= old:
            self.effective = new
        else:
            self.effective = min(self.effective, new)

    def observed(self, now: float) -> float:
        """Units that succeeded in the last period."""
        horizon = now - self._period
        while self._window and self._window[0][0] <= horizon:
            self._sum -= self._window.popleft()[1]
        return max(0.0, self._sum)

    def on_success(self, amount: float, now: float) -> bool:
        """Record ``amount`` units that went through and probe up; whether the limit changed."""
        self._window.append((now, amount))
        self._sum += amount
        if len(self._window) > 64 and self._window[0][0] <= now - self._period:
            self.observed(now)  # prune now and then, not on every call
        ceiling, effective = self.ceiling, self.effective
        if ceiling is None or effective is None or effective >= ceiling:
            return False
        step = self.INCREASE * ceiling * amount / max(effective, 1.0)
        self.effective = min(ceiling, effective + step)
        return True

    def on_throttle(self, seq: int, next_seq: int, now: float, *, pending: float = 0.0) -> bool:
        """Request number ``seq`` was throttled: lower the limit once per overshoot.

        ``next_seq`` is the number the next admitted request will get; ``pending`` the units
        admitted and not answered yet, which the server has mostly accepted already (counting
        them keeps the estimate honest before a period of successes exists). Returns whether the
        limit changed.
        """
        ceiling, effective = self.ceiling, self.effective
        if seq < self._guard or ceiling is None or effective is None:
            return False
        self._guard = next_seq
        target = min(effective, self.observed(now) + pending) * self.DECREASE
        lowered = max(effective * self.MAX_DECREASE, target, ceiling * self.FLOOR)
        self.effective = min(effective, lowered)
        return True


class RateSnapshot(NamedTuple):
    """What one response's rate-limit headers said; ``None`` where a header was absent or bad.

    Counts are units (requests or tokens); resets are seconds from when the response was made.
    (A named tuple: one is built per response, on the hot path.)
    """

    limit_requests_minute: float | None = None
    remaining_requests_minute: float | None = None
    reset_requests_minute: float | None = None
    limit_tokens_minute: float | None = None
    remaining_tokens_minute: float | None = None
    reset_tokens_minute: float | None = None
    limit_requests_day: float | None = None
    remaining_requests_day: float | None = None
    reset_requests_day: float | None = None
    limit_tokens_day: float | None = None
    remaining_tokens_day: float | None = None
    reset_tokens_day: float | None = None


def _header_fields() -> dict[str, tuple[str, bool, int]]:
    # header name -> (snapshot field, is a duration, precedence); an explicit "-minute" header
    # beats the OpenAI-style unsuffixed one that means the same bucket.
    fields: dict[str, tuple[str, bool, int]] = {}
    for kind in ("limit", "remaining", "reset"):
        for unit in ("requests", "tokens"):
            for period in ("minute", "day"):
                name = f"x-ratelimit-{kind}-{unit}-{period}"
                fields[name] = (f"{kind}_{unit}_{period}", kind == "reset", 1)
            fields[f"x-ratelimit-{kind}-{unit}"] = (f"{kind}_{unit}_minute", kind == "reset", 0)
    return fields


_HEADER_FIELDS = _header_fields()
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|us|µs|ns|h|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_count(value: str) -> float | None:
    """A non-negative finite number, or ``None``."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 <= number < math.inf else None


def parse_duration(value: str) -> float | None:
    """Seconds from ``"11.38"``, ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``; else ``None``."""
    text = value.strip().lower()
    seconds = parse_count(text)
    if seconds is not None or not _DURATION.fullmatch(text):
        return seconds
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def parse_rate_headers(headers: Mapping[str, str]) -> RateSnapshot:
    """Read the Cerebras and OpenAI-style ``x-ratelimit-*`` headers (names in any case).

    Cerebras sends ``x-ratelimit-{limit,remaining,reset}-tokens-minute`` and ``-requests-day``
    (resets in float seconds); OpenAI-style servers send ``x-ratelimit-{...}-{requests,tokens}``
    for their per-minute buckets with resets like ``"6m0s"``. Missing or malformed values are
    ``None``.
    """
    values: dict[str, float] = {}
    precedence: dict[str, int] = {}
    for name, raw in headers.items():
        if len(name) < 20 or name[12] not in "lrLR":  # cheap skip of unrelated headers
            continue
        spec = _HEADER_FIELDS.get(name.lower())
        if spec is None:
            continue
        field, is_duration, rank = spec
        number = parse_duration(raw) if is_duration else parse_count(raw.strip())
        if number is not None and rank >= precedence.get(field, -1):
            values[field], precedence[field] = number, rank
    return RateSnapshot(**values)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds a server asked us to wait: ``retry-after-ms``, else ``retry-after``; else ``None``.

    ``retry-after`` is seconds or an HTTP date, measured against ``now`` (wall-clock epoch
    seconds, default the current time). A date in the past means 0.
    """
    found: dict[str, str] = {}
    for name, raw in headers.items():
        key = name.lower()
        if key in ("retry-after-ms", "retry-after"):
            found[key] = raw.strip()
    if "retry-after-ms" in found:
        millis = parse_count(found["retry-after-ms"])
        if millis is not None:
            return millis / 1000
    value = found.get("retry-after")
    if value is None:
        return None
    seconds = parse_count(value)
    if seconds is not None:
        return seconds
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
