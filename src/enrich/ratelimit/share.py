"""A process's share of the fleet's budget: grants held, drawn by each request.

:class:`FleetShare` sits beside the process's :class:`~enrich.ratelimit.RateController`, which
consults it after admitting a request: :meth:`FleetShare.draw` takes one request and its
reserved tokens from what the process holds, asking the grant source
(:class:`~enrich.ratelimit.grants.Grants`) for more when that is short. The controller still
paces within its own limits and follows the provider's headers and 429s; the share only keeps
the fleet as a whole within its per-minute budget. How grants are sized and what becomes of an
unused one is :mod:`enrich.ratelimit.grants`.

One ask is in flight at a time: a request that finds the holding short waits behind the one
already asking (first come, first served), and then usually finds the new grant enough.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from enrich.ratelimit.grants import GrantPolicy, Grants, Holding, grant_ask, settle_share

__all__ = ["FleetShare", "ShareStats"]


@dataclass(frozen=True, slots=True)
class ShareStats:
    """Counters of a share: asks made, units granted, units that expired unused."""

    asks: int
    requests_granted: int
    tokens_granted: int
    requests_expired: int
    tokens_expired: int
    waited_s: float


class FleetShare:
    """What this process holds of the fleet's budget; see the module doc.

    A unit whose fleet budget is ``None`` (on ``grants``) is not shared: draws of it are free.
    ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        grants: Grants,
        *,
        policy: GrantPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._grants = grants
        self._policy = policy or GrantPolicy()
        self._clock = clock
        self._requests = Holding(self._policy.horizon_s)
        self._tokens = Holding(self._policy.horizon_s)
        self._lock = asyncio.Lock()
        self._asks = 0
        self._waited = 0.0

    def _shorts(self, tokens: int, now: float) -> tuple[int, int]:
        g = self._grants
        requests = self._requests.short(1, now) if g.requests_per_minute else 0
        tokens_short = self._tokens.short(tokens, now) if g.tokens_per_minute else 0
        return requests, tokens_short

    def _take(self, tokens: int, now: float) -> None:
        if self._grants.requests_per_minute:
            self._requests.take(1, now)
        if self._grants.tokens_per_minute:
            self._tokens.take(tokens, now)

    async def draw(self, tokens: int) -> None:
        """Take one request and ``tokens`` from the holding, asking for a grant when short.

        Raises ValueError when one request needs more than the fleet's whole minute.
        """
        now = self._clock()
        if not self._lock.locked() and self._shorts(tokens, now) == (0, 0):
            self._take(tokens, now)
            return
        start = now
        async with self._lock:
            while True:
                now = self._clock()
                need_requests, need_tokens = self._shorts(tokens, now)
                if not (need_requests or need_tokens):
                    self._waited += now - start
                    self._take(tokens, now)
                    return
                await self._ask(need_requests, need_tokens, now)

    async def _ask(self, need_requests: int, need_tokens: int, now: float) -> None:
        g, policy = self._grants, self._policy
        ask_requests = ask_tokens = 0
        if need_requests and g.requests_per_minute:
            recent = self._requests.recent(now)
            ask_requests = grant_ask(need_requests, recent, g.requests_per_minute, policy)
        if need_tokens and g.tokens_per_minute:
            recent = self._tokens.recent(now)
            ask_tokens = grant_ask(need_tokens, recent, g.tokens_per_minute, policy)
        granted = await g.take(ask_requests, ask_tokens)
        self._asks += 1
        # A grant lives from when it arrived: the wait for it was not time to use it.
        arrived = self._clock()
        self._requests.add(granted.requests, arrived)
        self._tokens.add(granted.tokens, arrived)

    def settle(self, reserved: int, used_tokens: int | None, status: int | None) -> None:
        """An attempt that drew ``reserved`` tokens ended; hand back what it did not use
        (:func:`~enrich.ratelimit.grants.settle_share`)."""
        back = settle_share(reserved, used_tokens, status)
        now = self._clock()
        if back.requests and self._grants.requests_per_minute:
            self._requests.give_back(back.requests, now)
        if back.tokens and self._grants.tokens_per_minute:
            self._tokens.give_back(back.tokens, now)

    @property
    def stats(self) -> ShareStats:
        """A snapshot of the counters."""
        now = self._clock()
        self._requests.held(now)
        self._tokens.held(now)
        return ShareStats(
            asks=self._asks,
            requests_granted=self._requests.granted,
            tokens_granted=self._tokens.granted,
            requests_expired=self._requests.expired,
            tokens_expired=self._tokens.expired,
            waited_s=self._waited,
        )
