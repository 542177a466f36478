"""A fleet's per-minute budget, handed out in grants: the port and its arithmetic (all pure).

Several processes working for one account share its requests and tokens per minute through a
grant source (:class:`Grants`, implemented over Prefect global concurrency limits by the flow
layer). A process asks for many requests or tokens at once, never one request at a time (an
ask costs a round trip to a server, 70-140 ms), and its own controller paces within what it
holds (:class:`~enrich.ratelimit.share.FleetShare`).

How big an ask is (:func:`grant_ask`): a horizon's worth (``GrantPolicy.horizon_s``, a few
seconds) of the larger of the process's recent draw and its fair share of the quota, at least
what the request waiting needs, at most ``max_share`` of the fleet's minute.

What happens to a grant not used (:class:`Holding`): it expires ``horizon_s`` after it was
granted and is dropped, never handed back. The grant source is a bucket that refills at the
quota's rate (a rate limit whose slots decay), so a dropped grant only keeps the fleet from that
much budget until the slots have decayed, a few seconds since a grant is a few seconds' worth;
handing it back would cost another round trip. The expiry bounds how late a granted request may
be sent, and so how far a fleet's sends can bunch: at most ``horizon_s`` of refill beyond what
the source admitted over any window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Grant", "GrantPolicy", "Grants", "Holding", "grant_ask", "settle_share"]


@dataclass(frozen=True, slots=True)
class Grant:
    """Requests and tokens of the fleet's per-minute budget granted to this process."""

    requests: int = 0
    tokens: int = 0


class Grants(Protocol):
    """Where a process gets its share of the fleet's per-minute budget.

    ``take`` waits until the source can grant ``requests`` requests and ``tokens`` tokens (either
    may be 0: not asked for) and returns what it granted: all of it, as the source may not split
    an ask. ``requests_per_minute`` and ``tokens_per_minute`` are the fleet's budgets (``None``:
    that unit is not shared).
    """

    requests_per_minute: float | None
    tokens_per_minute: float | None

    async def take(self, requests: int, tokens: int) -> Grant: ...


@dataclass(frozen=True, slots=True)
class GrantPolicy:
    """How grants are sized and how long one lasts.

    ``horizon_s``: a grant is a horizon's worth of sending, and expires that long after it was
    granted. ``max_share``: no single grant exceeds this share of the fleet's minute, so one
    process cannot take the whole budget at once while others wait.
    """

    horizon_s: float = 5.0
    max_share: float = 0.25

    def __post_init__(self) -> None:
        if not self.horizon_s > 0:
            raise ValueError(f"horizon_s must be positive, got {self.horizon_s}")
        if not 0 < self.max_share <= 1:
            raise ValueError(f"max_share must be in (0, 1], got {self.max_share}")


def grant_ask(need: int, recent: int, per_minute: float, policy: GrantPolicy) -> int:
    """How much to ask for when ``need`` more is wanted now.

    ``recent`` is what the process drew over the last horizon (its current rate, a horizon's
    worth); ``per_minute`` the fleet's budget of that unit. The ask is the larger of ``recent``
    and a horizon of the fair rate (``per_minute / 60``), at least ``need``, at most
    ``max_share`` of the minute unless ``need`` is more. A ``need`` beyond the whole minute can
    never be granted and raises ValueError.
    """
    if need > per_minute:
        raise ValueError(
            f"one request needs {need}, more than the fleet's budget of {per_minute:g} a minute"
        )
    fair = per_minute / 60 * policy.horizon_s
    want = max(float(need), float(recent), fair)
    cap = max(float(need), per_minute * policy.max_share)
    return max(need, 1, math.floor(min(want, cap, per_minute)))


def settle_share(reserved: int, used_tokens: int | None, status: int | None) -> Grant:
    """What an attempt hands back to the process's holding (negative: it used more).

    With usage, the tokens reserved but not used come back (or the excess is owed). Without,
    an attempt the provider refused with an error status cost it nothing: its tokens come back,
    and a 429's request too (the provider counted no request); a 408 or a transport failure
    (``status`` None) may have done the work and keeps both.
    """
    if used_tokens is not None:
        return Grant(0, reserved - used_tokens)
    if status is None or status == 408:
        return Grant()
    return Grant(1 if status == 429 else 0, reserved)


@dataclass(slots=True)
class Holding:
    """What a process holds of one unit: grants with their expiry, and what it drew lately.

    ``now`` is passed to every call (no clock here). Draws take from the oldest live grant
    first; expired grants are dropped (counted in ``expired``). Units handed back join the
    newest grant not yet expired (spent or not), or are dropped when there is none. Units used
    beyond what was held are ``owed`` and paid from the next grant.
    """

    horizon_s: float
    granted: int = 0
    expired: int = 0
    owed: int = 0
    _grants: deque[list[float]] = field(default_factory=deque)  # [expires_at, left]
    _draws: deque[tuple[float, int]] = field(default_factory=deque)

    def held(self, now: float) -> int:
        """Units available now."""
        while self._grants and self._grants[0][0] <= now:
            self.expired += int(self._grants.popleft()[1])
        return int(sum(left for _, left in self._grants))

    def recent(self, now: float) -> int:
        """Units drawn over the last horizon."""
        while self._draws and self._draws[0][0] <= now - self.horizon_s:
            self._draws.popleft()
        return sum(n for _, n in self._draws)

    def add(self, amount: int, now: float) -> None:
        """A grant of ``amount`` arrived; it pays what is owed first."""
        self.granted += amount
        paid = min(amount, self.owed)
        self.owed -= paid
        if amount > paid:
            self._grants.append([now + self.horizon_s, float(amount - paid)])

    def short(self, need: int, now: float) -> int:
        """How much more than is held a draw of ``need`` wants now (what is owed included)."""
        return max(0, need + self.owed - self.held(now))

    def take(self, amount: int, now: float) -> None:
        """Draw ``amount``; what is not held becomes owed."""
        self._draws.append((now, amount))
        self.held(now)
        self._spend(amount)

    def give_back(self, amount: int, now: float) -> None:
        """Hand back ``amount`` (negative: charge it)."""
        if amount < 0:
            self._spend(-amount)
            return
        paid = min(amount, self.owed)
        self.owed -= paid
        self.held(now)  # drops what expired
        if self._grants:
            self._grants[-1][1] += amount - paid
        else:
            self.expired += amount - paid

    def _spend(self, amount: int) -> None:
        # Spent grants stay until they expire: what is handed back joins the newest of them.
        for batch in self._grants:
            used = min(amount, int(batch[1]))
            batch[1] -= used
            amount -= used
            if not amount:
                return
        self.owed += amount
