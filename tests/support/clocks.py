"""A fake clock for the sans-IO cores (buckets, leases, quotas): time moves only when told to.

Pass the clock where code takes a ``clock`` callable, and its ``sleep`` where code takes an
async ``sleep``: a sleep moves the clock at once and is recorded, so a test of time-driven code
runs in no wall time and cannot depend on how busy the machine is.
"""

from __future__ import annotations

import asyncio


class FakeClock:
    """Seconds that move only on ``advance`` or ``sleep``; ``sleeps`` lists what was slept."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still a suspension point, as a real sleep is
