"""Which limit a 429 hit and how long to wait: the one classifier, table first."""

from __future__ import annotations

import pytest

from enrich.ratelimit import Throttle, ThrottleCause, classify_429, parse_rate_headers

MINUTE_TOKENS_PLENTY = {
    "x-ratelimit-remaining-tokens-minute": "90000",
    "x-ratelimit-limit-tokens-minute": "100000",
}
DAY_GONE = {"x-ratelimit-remaining-requests-day": "0", "x-ratelimit-reset-requests-day": "500"}


@pytest.mark.parametrize(
    ("code", "headers", "reserved", "limit", "resets_in"),
    [
        ("queue_exceeded", {}, 100, "capacity", None),
        ("queue_exceeded", {"x-ratelimit-reset-tokens-minute": "30"}, 100, "capacity", None),
        ("request_quota_exceeded", {}, 100, "requests_per_minute", None),
        (
            "request_quota_exceeded",
            {"x-ratelimit-remaining-requests-day": "0"},
            100,
            "requests_per_day",
            None,  # no header says when: the caller decides what unknown means
        ),
        ("request_quota_exceeded", DAY_GONE, 100, "requests_per_day", 500.0),
        ("token_quota_exceeded", DAY_GONE, 100, "requests_per_day", 500.0),  # the day first
        (
            "request_quota_exceeded",
            {"x-ratelimit-reset-requests": "1.5s"},  # OpenAI-style per-minute requests
            100,
            "requests_per_minute",
            1.5,
        ),
        (
            "request_quota_exceeded",  # the minute reset is about tokens, not requests
            {"x-ratelimit-reset-tokens-minute": "30"},
            100,
            "requests_per_minute",
            None,
        ),
        (
            "token_quota_exceeded",
            {"x-ratelimit-remaining-tokens-minute": "50"},
            100,
            "tokens_per_minute",
            None,
        ),
        ("token_quota_exceeded", {}, 100, "tokens_per_minute", None),
        (
            "token_quota_exceeded",
            {"x-ratelimit-reset-tokens-minute": "7.5"},
            None,
            "tokens_per_minute",
            7.5,
        ),
        (
            "token_quota_exceeded",  # the minute bucket has plenty: it is the day's tokens
            MINUTE_TOKENS_PLENTY,
            100,
            "tokens_per_day",
            None,
        ),
        (
            "token_quota_exceeded",  # ... whose reset no header reports: the requests' day's
            MINUTE_TOKENS_PLENTY | {"x-ratelimit-reset-requests-day": "7200"},
            100,
            "tokens_per_day",
            7200.0,
        ),
        (
            "token_quota_exceeded",  # without the reservation, no evidence for the day
            MINUTE_TOKENS_PLENTY | {"x-ratelimit-reset-tokens-minute": "12"},
            None,
            "tokens_per_minute",
            12.0,
        ),
        (
            "token_quota_exceeded",  # still plenty this minute, but not a quarter of the limit
            {
                "x-ratelimit-remaining-tokens-minute": "20000",
                "x-ratelimit-limit-tokens-minute": "100000",
            },
            100,
            "tokens_per_minute",
            None,
        ),
        (
            None,
            {"x-ratelimit-remaining-tokens-day": "50", "x-ratelimit-reset-tokens-day": "900"},
            100,
            "tokens_per_day",
            900.0,
        ),
        (None, {"x-ratelimit-remaining-tokens": "10"}, 100, "tokens_per_minute", None),
        (None, {"x-ratelimit-remaining-tokens": "10"}, None, "unknown", None),  # enough for 1
        (
            None,  # OpenAI-style: the bucket that is empty
            {
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "6m0s",
                "x-ratelimit-remaining-requests": "5",
                "x-ratelimit-reset-requests": "2s",
            },
            None,
            "tokens_per_minute",
            360.0,
        ),
        (
            None,
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"},
            None,
            "requests_per_minute",
            2.0,
        ),
        (None, {}, 100, "unknown", None),
        ("rate_limit_exceeded", {"x-ratelimit-remaining-tokens": "0"}, 100, "unknown", None),
    ],
)
def test_classify_429(
    code: str | None,
    headers: dict[str, str],
    reserved: int | None,
    limit: ThrottleCause,
    resets_in: float | None,
) -> None:
    throttle = classify_429(code, parse_rate_headers(headers), retry_after=None, reserved=reserved)
    assert throttle == Throttle(limit, None, resets_in)


@pytest.mark.parametrize(
    ("code", "retry_after", "wait"),
    [
        ("token_quota_exceeded", None, 30.0),  # the limit's reset
        ("token_quota_exceeded", 1.0, 1.0),  # the server's explicit word beats it
        ("queue_exceeded", None, None),  # the provider's load: nothing said
        ("queue_exceeded", 4.0, 4.0),
    ],
)
def test_wait_is_the_hint_else_the_reset(
    code: str, retry_after: float | None, wait: float | None
) -> None:
    snapshot = parse_rate_headers({"x-ratelimit-reset-tokens-minute": "30"})
    throttle = classify_429(code, snapshot, retry_after=retry_after)
    assert throttle.retry_after == retry_after
    assert throttle.wait == wait


@pytest.mark.parametrize(
    ("limit", "unit"),
    [
        ("requests_per_minute", "requests"),
        ("requests_per_day", "requests"),
        ("tokens_per_minute", "tokens"),
        ("tokens_per_day", "tokens"),
        ("capacity", "requests"),
        ("unknown", "requests"),
    ],
)
def test_what_ran_out(limit: ThrottleCause, unit: str) -> None:
    assert Throttle(limit).unit == unit
