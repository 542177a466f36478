"""The adaptive limit: a per-period limit that backs off when throttled and probes back up.

Pure: time comes from the caller as ``now`` (seconds on any monotonic clock); no IO, no sleeping.
"""

from __future__ import annotations

from collections import deque

__all__ = ["AdaptiveLimit"]


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
