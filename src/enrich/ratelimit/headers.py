"""What a provider's response headers say about its rate limits, parsed once per response.

:func:`parse_rate_headers` reads the ``x-ratelimit-*`` headers into a :class:`RateSnapshot`;
:func:`parse_retry_after` reads ``retry-after-ms`` / ``retry-after``. Pure: no IO, no clock
except the wall-clock default of ``parse_retry_after`` for HTTP dates.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import NamedTuple

__all__ = [
    "RateSnapshot",
    "parse_count",
    "parse_duration",
    "parse_rate_headers",
    "parse_retry_after",
]


class RateSnapshot(NamedTuple):
    """What one response's rate-limit headers said; ``None`` where a header was absent or bad.

    Counts are units (requests or tokens); resets are seconds from when the response was made.
    (A named tuple: one is built per response, on the hot path.)
    """

    limit_requests_minute: float | None = None
    remaining_requests_minute: float | None = None
    reset_requests_minute: float | None = None
    limit_tokens_minute: float | None = None
    remaining_tokens_minute: float | None = None
    reset_tokens_minute: float | None = None
    limit_requests_day: float | None = None
    remaining_requests_day: float | None = None
    reset_requests_day: float | None = None
    limit_tokens_day: float | None = None
    remaining_tokens_day: float | None = None
    reset_tokens_day: float | None = None


def _header_fields() -> dict[str, tuple[str, bool, int]]:
    # header name -> (snapshot field, is a duration, precedence); an explicit "-minute" header
    # beats the OpenAI-style unsuffixed one that means the same bucket.
    fields: dict[str, tuple[str, bool, int]] = {}
    for kind in ("limit", "remaining", "reset"):
        for unit in ("requests", "tokens"):
            for period in ("minute", "day"):
                name = f"x-ratelimit-{kind}-{unit}-{period}"
                fields[name] = (f"{kind}_{unit}_{period}", kind == "reset", 1)
            fields[f"x-ratelimit-{kind}-{unit}"] = (f"{kind}_{unit}_minute", kind == "reset", 0)
    return fields


_HEADER_FIELDS = _header_fields()
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|us|µs|ns|h|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_count(value: str) -> float | None:
    """A non-negative finite number, or ``None``."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 <= number < math.inf else None


def parse_duration(value: str) -> float | None:
    """Seconds from ``"11.38"``, ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``; else ``None``."""
    text = value.strip().lower()
    seconds = parse_count(text)
    if seconds is not None or not _DURATION.fullmatch(text):
        return seconds
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def parse_rate_headers(headers: Mapping[str, str]) -> RateSnapshot:
    """Read the Cerebras and OpenAI-style ``x-ratelimit-*`` headers (names in any case).

    Cerebras sends ``x-ratelimit-{limit,remaining,reset}-tokens-minute`` and ``-requests-day``
    (resets in float seconds); OpenAI-style servers send ``x-ratelimit-{...}-{requests,tokens}``
    for their per-minute buckets with resets like ``"6m0s"``. Missing or malformed values are
    ``None``.
    """
    values: dict[str, float] = {}
    precedence: dict[str, int] = {}
    for name, raw in headers.items():
        if len(name) < 20 or name[12] not in "lrLR":  # cheap skip of unrelated headers
            continue
        spec = _HEADER_FIELDS.get(name.lower())
        if spec is None:
            continue
        field, is_duration, rank = spec
        number = parse_duration(raw) if is_duration else parse_count(raw.strip())
        if number is not None and rank >= precedence.get(field, -1):
            values[field], precedence[field] = number, rank
    return RateSnapshot(**values)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds a server asked us to wait: ``retry-after-ms``, else ``retry-after``; else ``None``.

    ``retry-after`` is seconds or an HTTP date, measured against ``now`` (wall-clock epoch
    seconds, default the current time). A date in the past means 0.
    """
    found: dict[str, str] = {}
    for name, raw in headers.items():
        key = name.lower()
        if key in ("retry-after-ms", "retry-after"):
            found[key] = raw.strip()
    if "retry-after-ms" in found:
        millis = parse_count(found["retry-after-ms"])
        if millis is not None:
            return millis / 1000
    value = found.get("retry-after")
    if value is None:
        return None
    seconds = parse_count(value)
    if seconds is not None:
        return seconds
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
