"""Did what arrived keep to a per-minute quota? Arrivals as ``(time_s, amount)`` pairs.

A provider's per-minute quota is a bucket of one minute's worth, refilling at a sixtieth of it
a second: over any window of ``w`` seconds it admits at most ``per_minute * (1 + w / 60)``.
:func:`window_peak` is the most that arrived in any window of a given length;
:func:`overdraft` replays the arrivals through such a bucket, full at the start, and says by
how much it was overdrawn at worst (0: every arrival found room).
"""

from __future__ import annotations

from collections.abc import Sequence

Arrivals = Sequence[tuple[float, float]]


def allowance(per_minute: float, window_s: float) -> float:
    """The most a full bucket of ``per_minute`` admits over ``window_s`` seconds."""
    return per_minute * (1 + window_s / 60)


def window_peak(arrivals: Arrivals, window_s: float) -> float:
    """The most that arrived within any ``window_s`` seconds (windows start at an arrival)."""
    events = sorted(arrivals)
    peak = total = 0.0
    start = 0
    for t, amount in events:
        total += amount
        while events[start][0] <= t - window_s:
            total -= events[start][1]
            start += 1
        peak = max(peak, total)
    return peak


def overdraft(arrivals: Arrivals, per_minute: float) -> float:
    """How far a bucket of ``per_minute`` (full at the first arrival) went below empty."""
    events = sorted(arrivals)
    if not events:
        return 0.0
    level, last, worst = per_minute, events[0][0], 0.0
    for t, amount in events:
        level = min(per_minute, level + (t - last) * per_minute / 60) - amount
        last = t
        worst = max(worst, -level)
    return worst
