"""Server-side quota arithmetic: continuously refilling token buckets, as the provider keeps them.

A bucket holds up to `capacity` units (the limit), starts full, and refills at
`capacity / period` units a second. A request is admitted only if every bucket can cover it;
then it is charged to all of them at once, so a refused request costs nothing. Token
reservations (prompt + max completion) are refunded down to actual usage when the request ends.

An unset limit is still tracked, against a huge capacity, so the headers look like the
provider's docs example, but it never refuses. Everything here is pure: time comes from an
injected clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from enrich.sim.config import Limits

MINUTE = 60.0
DAY = 86400.0
UNLIMITED = 1_000_000_000


class QuotaBucket:
    """A bucket of `capacity` units refilling continuously over `period` seconds."""

    __slots__ = ("_clock", "_level", "_stamp", "capacity", "enforced", "period", "rate")

    def __init__(
        self,
        capacity: int | None,
        period: float,
        clock: Callable[[], float],
        level: float | None = None,
    ) -> None:
        self.enforced = capacity is not None
        self.capacity = capacity if capacity is not None else UNLIMITED
        self.period = period
        self.rate = self.capacity / period
        self._clock = clock
        self._stamp = clock()
        self._level = float(self.capacity) if level is None else min(level, float(self.capacity))

    def level(self) -> float:
        """Units available now."""
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._level = min(float(self.capacity), self._level + elapsed * self.rate)
            self._stamp = now
        return self._level

    def covers(self, amount: float) -> bool:
        """Whether `amount` units could be taken now (always true when not enforced)."""
        return not self.enforced or self.level() >= amount

    def take(self, amount: float) -> None:
        """Remove `amount` units; the level may go below zero only for unenforced buckets."""
        self._level = self.level() - amount

    def give(self, amount: float) -> None:
        """Return `amount` units (a refund), never beyond capacity."""
        self._level = min(float(self.capacity), self.level() + amount)

    def remaining(self) -> int:
        """Whole units available now, as reported in the headers."""
        return max(0, math.floor(self.level()))

    def reset_in(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level()) / self.rate)

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` units are available (time to full if it never fits)."""
        need = min(amount, float(self.capacity)) - self.level()
        return max(0.0, need / self.rate)

    def resized(self, capacity: int | None) -> QuotaBucket:
        """A bucket with a new capacity that keeps what has been used so far."""
        used = self.capacity - self.level()
        new_capacity = capacity if capacity is not None else UNLIMITED
        return QuotaBucket(capacity, self.period, self._clock, level=max(0.0, new_capacity - used))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused: the 429 body fields and the seconds until it could fit."""

    code: str
    type: str
    message: str
    wait: float


_RPM = Refusal(
    "request_quota_exceeded",
    "too_many_requests_error",
    "Requests per minute limit exceeded - too many requests sent.",
    0.0,
)
_TPM = Refusal(
    "token_quota_exceeded",
    "too_many_tokens_error",
    "Tokens per minute limit exceeded - too many tokens processed.",
    0.0,
)
_RPD = Refusal(
    "request_quota_exceeded",
    "too_many_requests_error",
    "Requests per day limit exceeded - too many requests sent.",
    0.0,
)
_TPD = Refusal(
    "token_quota_exceeded",
    "too_many_tokens_error",
    "Tokens per day limit exceeded - too many tokens processed.",
    0.0,
)


class AccountQuotas:
    """The four quota buckets of one account: requests and tokens, per minute and per day."""

    __slots__ = ("_clock", "limits", "rpd", "rpm", "tpd", "tpm")

    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.limits = limits
        self.rpm = QuotaBucket(limits.rpm, MINUTE, clock)
        self.tpm = QuotaBucket(limits.tpm, MINUTE, clock)
        self.rpd = QuotaBucket(limits.rpd, DAY, clock)
        self.tpd = QuotaBucket(limits.tpd, DAY, clock)

    def admit(self, tokens: int) -> Refusal | None:
        """Charge one request reserving `tokens`, or return why not (charging nothing)."""
        for bucket, amount, refusal in (
            (self.rpm, 1, _RPM),
            (self.tpm, tokens, _TPM),
            (self.rpd, 1, _RPD),
            (self.tpd, tokens, _TPD),
        ):
            if not bucket.covers(amount):
                return Refusal(refusal.code, refusal.type, refusal.message, bucket.wait_for(amount))
        self.rpm.take(1)
        self.rpd.take(1)
        self.tpm.take(tokens)
        self.tpd.take(tokens)
        return None

    def refund(self, tokens: int) -> None:
        """Give back reserved tokens that were not used."""
        if tokens > 0:
            self.tpm.give(tokens)
            self.tpd.give(tokens)

    def set_limits(self, limits: Limits) -> None:
        """Change the limits in place, keeping the usage each bucket has seen."""
        self.limits = limits
        self.rpm = self.rpm.resized(limits.rpm)
        self.tpm = self.tpm.resized(limits.tpm)
        self.rpd = self.rpd.resized(limits.rpd)
        self.tpd = self.tpd.resized(limits.tpd)

    def refill(self) -> None:
        """Fill every bucket (a fresh account)."""
        self.rpm = QuotaBucket(self.limits.rpm, MINUTE, self._clock)
        self.tpm = QuotaBucket(self.limits.tpm, MINUTE, self._clock)
        self.rpd = QuotaBucket(self.limits.rpd, DAY, self._clock)
        self.tpd = QuotaBucket(self.limits.tpd, DAY, self._clock)

    def headers(self, openai: bool = False) -> dict[str, str]:
        """The rate-limit headers the provider puts on every response."""
        tpm, rpd = self.tpm, self.rpd
        headers = {
            "x-ratelimit-limit-requests-day": str(rpd.capacity),
            "x-ratelimit-limit-tokens-minute": str(tpm.capacity),
            "x-ratelimit-remaining-requests-day": str(rpd.remaining()),
            "x-ratelimit-remaining-tokens-minute": str(tpm.remaining()),
            "x-ratelimit-reset-requests-day": repr(rpd.reset_in()),
            "x-ratelimit-reset-tokens-minute": repr(tpm.reset_in()),
        }
        if openai:
            rpm = self.rpm
            headers["x-ratelimit-limit-requests"] = str(rpm.capacity)
            headers["x-ratelimit-remaining-requests"] = str(rpm.remaining())
            headers["x-ratelimit-reset-requests"] = go_duration(rpm.reset_in())
            headers["x-ratelimit-limit-tokens"] = str(tpm.capacity)
            headers["x-ratelimit-remaining-tokens"] = str(tpm.remaining())
            headers["x-ratelimit-reset-tokens"] = go_duration(tpm.reset_in())
        return headers


def go_duration(seconds: float) -> str:
    """OpenAI's reset format: `0s`, `250ms`, `1.5s`, `6m0s`, `1h2m3s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text
