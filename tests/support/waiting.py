"""Waiting for something to become true, without betting on how long it takes.

Tests poll a condition up to a generous deadline instead of sleeping a fixed time: on a loaded
machine a fixed sleep is too short, and on a quiet one it wastes time. The deadline only bounds
a hang; no test asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# Long enough for two busy cores and several test sessions sharing them.
DEADLINE_S = 60.0


async def eventually(
    predicate: Callable[[], bool], within_s: float = DEADLINE_S, message: str = ""
) -> None:
    """Poll ``predicate`` on the event loop until it holds (fails after ``within_s``)."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message or "the condition never held")
        await asyncio.sleep(0.01)


def until(predicate: Callable[[], bool], within_s: float = DEADLINE_S, message: str = "") -> None:
    """Poll ``predicate`` from a thread until it holds (fails after ``within_s``)."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message or "the condition never held")
        time.sleep(0.01)
