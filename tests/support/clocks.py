"""Clocks that move only when told to, for time-driven code.

:class:`FakeClock`, for the sans-IO cores (buckets, leases, quotas): pass the clock where code
takes a ``clock`` callable, and its ``sleep`` where code takes an async ``sleep``: a sleep moves
the clock at once and is recorded, so a test of time-driven code runs in no wall time and
cannot depend on how busy the machine is.

:class:`VirtualTimeLoop` (run with :func:`run_virtual`), for whole concurrent systems: a real
asyncio event loop whose time jumps to the next timer whenever nothing is ready, so minutes of
many tasks sleeping and waking run in milliseconds, in the same order they would in real time.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


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


class _VirtualSelector(selectors.DefaultSelector):
    """Never blocks: the time the loop would wait passes instantly."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if not events:
            if timeout is None:
                raise RuntimeError("deadlock: nothing scheduled and nothing ready")
            self.now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: real asyncio semantics, minutes simulated in milliseconds."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Callable[[VirtualTimeLoop], Awaitable[T]]) -> T:
    """Run ``main(loop)`` to completion on a fresh :class:`VirtualTimeLoop`."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()
