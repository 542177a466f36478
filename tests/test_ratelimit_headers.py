"""Parsing what providers' headers say about rate limits: x-ratelimit-*, durations, retry-after."""

from __future__ import annotations

import pytest

from enrich.ratelimit import RateSnapshot, parse_duration, parse_rate_headers, parse_retry_after

CEREBRAS = {  # the documented example
    "x-ratelimit-limit-requests-day": "1000000000",
    "x-ratelimit-limit-tokens-minute": "1000000000",
    "x-ratelimit-remaining-requests-day": "999997455",
    "x-ratelimit-remaining-tokens-minute": "999998298",
    "x-ratelimit-reset-requests-day": "33011.382867097855",
    "x-ratelimit-reset-tokens-minute": "11.382867097854614",
    "content-type": "application/json",
}
OPENAI = {
    "X-RateLimit-Limit-Requests": "500",
    "X-RateLimit-Remaining-Requests": "499",
    "X-RateLimit-Reset-Requests": "120ms",
    "X-RateLimit-Limit-Tokens": "30000",
    "X-RateLimit-Remaining-Tokens": "29000",
    "X-RateLimit-Reset-Tokens": "6m0s",
}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, RateSnapshot()),
        (
            CEREBRAS,
            RateSnapshot(
                limit_requests_day=1e9,
                remaining_requests_day=999997455,
                reset_requests_day=33011.382867097855,
                limit_tokens_minute=1e9,
                remaining_tokens_minute=999998298,
                reset_tokens_minute=11.382867097854614,
            ),
        ),
        (
            OPENAI,
            RateSnapshot(
                limit_requests_minute=500,
                remaining_requests_minute=499,
                reset_requests_minute=0.12,
                limit_tokens_minute=30000,
                remaining_tokens_minute=29000,
                reset_tokens_minute=360.0,
            ),
        ),
        (
            {"X-RATELIMIT-REMAINING-TOKENS-MINUTE": "12", "x-ratelimit-remaining-tokens": "99"},
            RateSnapshot(remaining_tokens_minute=12),  # the explicit -minute header wins
        ),
        (
            {
                "x-ratelimit-limit-tokens-minute": "lots",
                "x-ratelimit-remaining-tokens-minute": "-5",
                "x-ratelimit-reset-tokens-minute": "soon",
                "x-ratelimit-remaining-requests-day": "nan",
                "x-ratelimit-reset-requests-day": "1x",
                "x-ratelimit-limit-requests-day": "inf",
            },
            RateSnapshot(),  # malformed values are as good as absent
        ),
        ({"x-ratelimit-remaining-requests-day": " 7 "}, RateSnapshot(remaining_requests_day=7)),
    ],
)
def test_parse_rate_headers(headers: dict[str, str], expected: RateSnapshot) -> None:
    assert parse_rate_headers(headers) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("11.382867097854614", 11.382867097854614),
        ("0", 0.0),
        ("1s", 1.0),
        ("0.5s", 0.5),
        ("20ms", 0.02),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("1.5m", 90.0),
        ("", None),
        ("s", None),
        ("5 s", None),
        ("-1s", None),
        ("1d", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "300", "retry-after": "9"}, 0.3),  # the finer one wins
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"}, 30.0),
        ({"retry-after": "Tue, 14 Nov 2023 22:00:00 GMT"}, 0.0),  # already past
        ({"retry-after": "tomorrow"}, None),
        ({"retry-after": "-3"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == seconds
