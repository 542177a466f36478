"""The adaptive limit: a per-period limit that backs off once per congestion event and climbs back.

Pure: time comes from the caller as ``now`` (seconds on any monotonic clock); no IO, no sleeping.
Whether a 429 is a congestion signal at all is not decided here
(:func:`~enrich.ratelimit.throttle.classify_429` does); this is the arithmetic of what a signal
does to the limit.
"""

from __future__ import annotations

from collections import deque

__all__ = ["AdaptiveLimit"]


class AdaptiveLimit:
    """A per-period limit that backs off on congestion events and climbs back (AIMD).

    ``effective`` never exceeds ``ceiling = min(configured, server)``, where ``server`` is the
    limit a server reported in its headers (``None`` for both: no limit).

    *Decrease, once per event.* On a throttle it drops to ``max(effective * 0.5, min(effective,
    accepted) * 0.9)``, where ``accepted`` is what the server took over the last period plus
    what is still in flight: the server just said it is full, so what it accepted over one
    period is about its true limit. Every throttle of a request admitted before that drop
    (``seq`` below the guard), and every throttle within ``WINDOW`` seconds of it (or the
    server's ``retry-after``, if longer), belongs to the same event and lowers nothing more, as
    TCP halves once per round trip, not once per lost packet.

    *A floor for what is not known.* A throttle that is not known to be a quota (``confirmed``
    false: a 429 that names no limit) never takes a limit the server does not report below what
    the server accepted over the last period, once a whole period has been seen (before that,
    the buckets' first burst is still in the count). Such a cut holds still until it is taken
    back (:meth:`undo`: it was noise) or kept (:meth:`confirm`: it was a quota).

    *Increase, in proportion to successes.* Every success raises the limit by a share of the
    ceiling per period's worth of successes at the current limit: ``RECOVER`` (half the
    ceiling) while it is below 0.9 of what the server accepted when a quota last said it was
    full (or anywhere, when no 429 was ever known to be a quota), so that a limit cut further
    than that is back within a minute or two; ``INCREASE`` (5 %) above it, so that the probe
    past a known quota is slow and the next overshoot small.
    """

    DECREASE = 0.9
    MAX_DECREASE = 0.5
    INCREASE = 0.05
    RECOVER = 0.5
    FLOOR = 0.01  # of the ceiling: the limit never collapses to nothing
    WINDOW = 3.0  # seconds: throttles this close to a drop are the same congestion event

    __slots__ = (
        "_event_until",
        "_first",
        "_guard",
        "_period",
        "_quota_level",
        "_sum",
        "_undo_to",
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
        self._event_until = float("-inf")
        self._window: deque[tuple[float, float]] = deque()
        self._sum = 0.0
        self._first: float | None = None
        self._quota_level: float | None = None  # the limit when a quota last said it was full
        self._undo_to: float | None = None  # the limit before cuts not known to be a quota

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
        """Units the server accepted (answered without a 429) in the last period."""
        horizon = now - self._period
        while self._window and self._window[0][0] <= horizon:
            self._sum -= self._window.popleft()[1]
        return max(0.0, self._sum)

    def on_answered(self, amount: float, now: float) -> None:
        """Record ``amount`` units the server answered without a 429 and without success (a
        5xx): accepted past its limiter, but no reason to climb."""
        if self._first is None:
            self._first = now
        self._window.append((now, amount))
        self._sum += amount
        if len(self._window) > 64 and self._window[0][0] <= now - self._period:
            self.observed(now)  # prune now and then, not on every call

    def on_success(self, amount: float, now: float) -> bool:
        """Record ``amount`` units that went through and climb; whether the limit changed."""
        self.on_answered(amount, now)
        ceiling, effective = self.ceiling, self.effective
        if ceiling is None or effective is None or effective >= ceiling:
            return False
        if self._undo_to is not None:
            return False  # a cut under test holds still until it is undone or confirmed
        known = self._quota_level
        rate = self.INCREASE if known is not None and effective >= known * 0.9 else self.RECOVER
        step = rate * ceiling * amount / max(effective, 1.0)
        self.effective = min(ceiling, effective + step)
        return True

    def floor(self, now: float) -> float:
        """What the server accepted over the last period, once a whole period has been seen;
        0 before, and for a limit the server reports."""
        first = self._first
        if self.server is not None or first is None or now - first < self._period:
            return 0.0
        return self.observed(now)

    def on_throttle(
        self,
        seq: int,
        next_seq: int,
        now: float,
        *,
        pending: float = 0.0,
        hold: float = 0.0,
        confirmed: bool = True,
    ) -> bool:
        """Request number ``seq`` was throttled: lower the limit once per congestion event.

        ``next_seq`` is the number the next admitted request will get; ``pending`` the units
        admitted and not answered yet, which the server has mostly accepted already (counting
        them keeps the estimate honest before a period of successes exists); ``hold`` the
        server's ``retry-after``, which widens the event's window; ``confirmed`` whether the
        throttle is known to be a quota (else the floor applies and the cut can be undone).
        Returns whether the limit changed.
        """
        ceiling, effective = self.ceiling, self.effective
        if seq < self._guard or now < self._event_until or ceiling is None or effective is None:
            return False
        self._guard = next_seq
        self._event_until = now + max(self.WINDOW, hold)
        accepted = min(effective, self.observed(now) + pending)
        target = accepted * self.DECREASE
        lowered = max(effective * self.MAX_DECREASE, target, ceiling * self.FLOOR)
        if not confirmed:
            lowered = max(lowered, self.floor(now))
            self._undo_to = max(effective, self._undo_to or 0.0)
        self.effective = min(effective, lowered)
        if confirmed:
            # Where the quota is, as near as this event tells: what the server took, and no
            # less than where the cut lands (a halving says little about it).
            self._quota_level = max(accepted, self.effective / self.DECREASE)
            self._undo_to = None
        return True

    def confirm(self) -> None:
        """The cuts since the last quota signal were a quota after all: keep them, probe slowly."""
        if self._undo_to is not None and self.effective is not None:
            # What the server accepted at the cut, as near as the cut tells it.
            accepted = min(self._undo_to, self.effective / self.DECREASE)
            self._quota_level, self._undo_to = accepted, None

    def undo(self) -> bool:
        """The cuts since the last quota signal were noise: back to the limit before them.

        Returns whether the limit changed.
        """
        level, self._undo_to = self._undo_to, None
        if level is None or self.effective is None or self.ceiling is None:
            return False
        restored = min(self.ceiling, max(self.effective, level))
        changed = restored != self.effective
        self.effective = restored
        return changed
