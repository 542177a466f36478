"""Rates over a time window, from the simulator's own counters sampled while a side runs.

The simulator's quota buckets start full, as the provider's do: the first minute's quota goes
out at once, at whatever speed the client can send. A share of the quota is therefore measured
as a *rate over a window that starts after that burst*: the counters are sampled every
``interval`` seconds (:class:`Sampler`), and :func:`window` takes the first sample at or after
the window's start and the last one at or before its end. The counters are the server's, so a
429 the client never saw counted, or a request it gave up on, is still counted.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from enrich.sim.stats import SimStats


@dataclass(frozen=True, slots=True)
class Sample:
    """The simulator's counters ``t`` seconds after the side started."""

    t: float
    requests: int
    ok: int
    throttled: int
    tokens: int
    server_errors: int = 0

    @classmethod
    def of(cls, t: float, stats: SimStats) -> Sample:
        return cls(
            t=t,
            requests=stats.requests,
            ok=stats.by_status.get(200, 0),
            throttled=stats.by_status.get(429, 0),
            tokens=stats.prompt_tokens + stats.completion_tokens,
            server_errors=sum(n for status, n in stats.by_status.items() if status >= 500),
        )


@dataclass(frozen=True, slots=True)
class Window:
    """What happened between two samples: counts, and per-second rates."""

    start: float
    end: float
    requests: int
    ok: int
    throttled: int
    tokens: int
    server_errors: int = 0

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def throttled_share(self) -> float:
        """429s as a share of every request received in the window."""
        return self.throttled / self.requests if self.requests else 0.0


def window(samples: Sequence[Sample], start: float, end: float) -> Window:
    """The counts between the first sample at or after ``start`` and the last at or before ``end``.

    Raises ValueError when fewer than two samples fall inside.
    """
    inside = [s for s in samples if start <= s.t <= end]
    if len(inside) < 2:
        raise ValueError(f"fewer than two samples between {start:g} s and {end:g} s")
    a, b = inside[0], inside[-1]
    return Window(
        start=a.t,
        end=b.t,
        requests=b.requests - a.requests,
        ok=b.ok - a.ok,
        throttled=b.throttled - a.throttled,
        tokens=b.tokens - a.tokens,
        server_errors=b.server_errors - a.server_errors,
    )


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


class Sampler:
    """Samples ``read()`` (blocking, run in a thread) every ``interval`` seconds while running.

    Use as ``async with Sampler(sim.stats) as sampler: ...``; ``sampler.samples`` has one sample
    at the start, one every interval, and one at the end, timed from the start.
    """

    def __init__(self, read: Callable[[], SimStats], interval: float = 0.5) -> None:
        self._read = read
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self.samples: list[Sample] = []

    async def _take(self) -> None:
        stats = await asyncio.to_thread(self._read)
        self.samples.append(Sample.of(time.perf_counter() - self._started, stats))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._take()

    async def __aenter__(self) -> Sampler:
        self._started = time.perf_counter()
        await self._take()
        self._task = asyncio.ensure_future(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._take()
