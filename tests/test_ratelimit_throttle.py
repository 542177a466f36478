"""Which limit a 429 hit and how long to wait: the one classifier, table first."""

from __future__ import annotations

import pytest

from enrich.ratelimit import (
    Throttle,
    ThrottleCause,
    Trend,
    classify_429,
    parse_rate_headers,
)

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
        ("rate_limit_exceeded", {}, 100, "unknown", None),  # names no limit, shows nothing
        # Headers that show room in the minute's requests (and tokens): not our quota.
        (None, {"x-ratelimit-remaining-requests": "7"}, 100, "noise", None),
        (
            "rate_limit_exceeded",
            {"x-ratelimit-remaining-requests": "7", "x-ratelimit-remaining-tokens": "5000"},
            100,
            "noise",
            None,
        ),
        (  # room in the requests, but the tokens are gone: a quota
            "rate_limit_exceeded",
            {"x-ratelimit-remaining-requests": "7", "x-ratelimit-remaining-tokens": "50"},
            100,
            "unknown",
            None,
        ),
        (  # a named quota is a quota, whatever else the headers say
            "request_quota_exceeded",
            {"x-ratelimit-remaining-requests": "7"},
            100,
            "requests_per_minute",
            None,
        ),
        (  # room in the minute's tokens says nothing about the minute's requests
            None,
            {"x-ratelimit-remaining-tokens-minute": "90000"},
            100,
            "unknown",
            None,
        ),
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
        ("noise", "requests"),
        ("unknown", "requests"),
    ],
)
def test_what_ran_out(limit: ThrottleCause, unit: str) -> None:
    assert Throttle(limit).unit == unit


@pytest.mark.parametrize(
    ("code", "headers", "reports_requests", "trend", "limit"),
    [
        # A provider that reports the minute's requests on its answers, and a 429 without them:
        # something in between refused it.
        (None, {}, True, "unknown", "noise"),
        ("rate_limit_exceeded", {"retry-after": "1"}, True, "unknown", "noise"),
        (None, {"x-ratelimit-remaining-requests": "0"}, True, "unknown", "requests_per_minute"),
        # Slowing down did not reduce the share of such 429s.
        ("rate_limit_exceeded", {}, False, "holds", "noise"),
        ("rate_limit_exceeded", {}, False, "falls", "unknown"),
        ("rate_limit_exceeded", {}, False, "unknown", "unknown"),
        # The evidence never overrides a named quota or an empty bucket.
        ("request_quota_exceeded", {}, True, "holds", "requests_per_minute"),
        ("token_quota_exceeded", {}, True, "holds", "tokens_per_minute"),
        (None, {"x-ratelimit-remaining-tokens": "0"}, False, "holds", "tokens_per_minute"),
        (None, {"x-ratelimit-remaining-requests-day": "0"}, True, "holds", "requests_per_day"),
        ("queue_exceeded", {}, False, "unknown", "capacity"),
    ],
)
def test_noise_or_quota(
    code: str | None,
    headers: dict[str, str],
    reports_requests: bool,
    trend: Trend,
    limit: ThrottleCause,
) -> None:
    throttle = classify_429(
        code,
        parse_rate_headers(headers),
        retry_after=None,
        reserved=100,
        reports_requests=reports_requests,
        trend=trend,
    )
    assert throttle.limit == limit
    assert throttle.quota is (limit not in ("noise", "capacity"))
