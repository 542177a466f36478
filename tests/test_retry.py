"""The retry policy: what is retried, how long it waits, and tenacity driving it."""

from __future__ import annotations

import pytest

from enrich.errors import CompletionError, QuotaExhausted
from enrich.retry import backoff, is_retryable, retry_after, retrying


def err(status: int | None = None, code: str | None = None, **headers: str) -> CompletionError:
    names = {k.replace("_", "-"): v for k, v in headers.items()}
    return CompletionError("failed", status=status, code=code, headers=names)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (err(408), True),
        (err(409), True),
        (err(429, "request_quota_exceeded"), True),
        (err(429, "queue_exceeded"), True),
        (err(500), True),
        (err(502), True),
        (err(503), True),
        (err(None, "timeout"), True),
        (err(None, "connection"), True),
        (err(None, None), False),
        (err(None, "ssl"), False),
        (err(400, "wrong_api_format"), False),
        (err(401, "wrong_api_key"), False),
        (err(403), False),
        (err(404, "model_not_found"), False),
        (err(413), False),
        (err(422), False),
        (err(400, "context_length_exceeded"), False),
        (err(None, "invalid_output"), False),
        (err(500, "invalid_output"), False),
        (err(429, x_should_retry="false"), False),  # the server's word wins, as in the SDK
        (err(400, x_should_retry="true"), True),
        (err(400, "context_length_exceeded", x_should_retry="true"), False),
        (ValueError("bad"), False),
        (TimeoutError(), False),
        (QuotaExhausted("requests", 10.0), False),
    ],
)
def test_is_retryable(error: BaseException, retryable: bool) -> None:
    assert is_retryable(error) is retryable


NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    ("error", "seconds"),
    [
        (err(503), None),
        (err(503, retry_after="2"), 2.0),
        (err(500, retry_after_ms="150"), 0.15),
        (err(429, retry_after="Tue, 14 Nov 2023 22:13:35 GMT"), 15.0),
        (err(429, retry_after="3600"), 60.0),  # capped
        (err(429, "request_quota_exceeded"), None),  # RPM: no header says when
        (
            err(429, "token_quota_exceeded", x_ratelimit_reset_tokens_minute="11.5"),
            11.5,
        ),
        (
            err(  # a retry-after beats the bucket reset
                429, "token_quota_exceeded", retry_after="1", x_ratelimit_reset_tokens_minute="30"
            ),
            1.0,
        ),
        (
            err(  # the minute reset is about tokens, not requests
                429, "request_quota_exceeded", x_ratelimit_reset_tokens_minute="30"
            ),
            None,
        ),
        (
            err(
                429,
                "request_quota_exceeded",
                x_ratelimit_remaining_requests_day="0",
                x_ratelimit_reset_requests_day="20.5",
            ),
            20.5,
        ),
        (
            err(
                429,
                "request_quota_exceeded",
                x_ratelimit_remaining_requests_day="0",
                x_ratelimit_reset_requests_day="33011.4",
            ),
            60.0,
        ),
        (
            err(429, "request_quota_exceeded", x_ratelimit_reset_requests="1.5s"),
            1.5,  # OpenAI-style per-minute requests header
        ),
        (
            err(  # no code: the reset of the bucket that is empty
                429,
                x_ratelimit_remaining_tokens="0",
                x_ratelimit_reset_tokens="6m0s",
                x_ratelimit_remaining_requests="5",
                x_ratelimit_reset_requests="2s",
            ),
            60.0,
        ),
        (err(429, "queue_exceeded", x_ratelimit_reset_tokens_minute="30"), None),
        (err(400, x_ratelimit_reset_tokens_minute="30"), None),
        (ValueError(), None),
    ],
)
def test_retry_after(error: BaseException, seconds: float | None) -> None:
    assert retry_after(error, now=NOW) == seconds


@pytest.mark.parametrize(
    ("attempt", "initial", "maximum", "rand", "expected"),
    [
        (1, 0.5, 8.0, 0.999, 0.4995),
        (1, 0.5, 8.0, 0.0, 0.0),
        (2, 0.5, 8.0, 0.5, 0.5),
        (3, 0.5, 8.0, 0.5, 1.0),
        (5, 0.5, 8.0, 0.999, 7.992),
        (6, 0.5, 8.0, 0.5, 4.0),  # capped at maximum before jitter
        (10_000, 0.5, 8.0, 0.5, 4.0),  # no overflow
        (0, 1.0, 8.0, 0.5, 0.5),  # nonsense attempt numbers count as the first
    ],
)
def test_backoff(
    attempt: int, initial: float, maximum: float, rand: float, expected: float
) -> None:
    assert backoff(attempt, initial=initial, maximum=maximum, rand=lambda: rand) == pytest.approx(
        expected
    )


@pytest.mark.parametrize("attempt", range(1, 12))
@pytest.mark.parametrize("rand", [0.0, 0.25, 0.999999])
def test_backoff_stays_within_its_window(attempt: int, rand: float) -> None:
    ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
    assert 0.0 <= backoff(attempt, initial=0.5, maximum=8.0, rand=lambda: rand) <= ceiling


class Flaky:
    """An operation that raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def run(operation: Flaky, *, attempts: int = 5) -> tuple[str, int, list[float]]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    result = ""
    made = 0
    async for attempt in retrying(
        attempts=attempts, initial=1.0, maximum=8.0, sleep=sleep, rand=lambda: 0.5
    ):
        with attempt:
            result = await operation()
        made = attempt.retry_state.attempt_number
    return result, made, sleeps


@pytest.mark.parametrize(
    ("errors", "sleeps"),
    [
        ((), []),
        ((err(500),), [0.5]),
        ((err(500), err(None, "timeout"), err(502)), [0.5, 1.0, 2.0]),
        ((err(429, "request_quota_exceeded", retry_after="3"), err(503)), [3.0, 1.0]),
        ((err(429, retry_after_ms="100"),), [0.5]),  # the backoff is longer than the hint
        (
            (err(429, "token_quota_exceeded", x_ratelimit_reset_tokens_minute="12"),),
            [12.0],
        ),
    ],
)
async def test_retries_until_success(
    errors: tuple[CompletionError, ...], sleeps: list[float]
) -> None:
    operation = Flaky(*errors)
    result, made, slept = await run(operation)
    assert (result, made, operation.calls) == ("ok", len(errors) + 1, len(errors) + 1)
    assert slept == pytest.approx(sleeps)


async def test_non_retryable_error_fails_after_one_attempt() -> None:
    operation = Flaky(err(400, "context_length_exceeded"))
    with pytest.raises(CompletionError) as exc:
        await run(operation)
    assert exc.value.code == "context_length_exceeded"
    assert operation.calls == 1


async def test_stops_after_attempts_and_reraises_the_last_error() -> None:
    operation = Flaky(err(500), err(502), err(503), err(504))
    with pytest.raises(CompletionError) as exc:
        await run(operation, attempts=3)
    assert exc.value.status == 503
    assert operation.calls == 3


@pytest.mark.parametrize("error", [QuotaExhausted("tokens", 3600.0), ValueError("bug")])
async def test_other_exceptions_pass_straight_through(error: Exception) -> None:
    operation = Flaky(error)
    with pytest.raises(type(error)):
        await run(operation)
    assert operation.calls == 1


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        retrying(attempts=0, initial=1.0, maximum=2.0)


async def run_fast(operation: Flaky, *, attempts: int = 5) -> tuple[str, int, list[float]]:
    """The engine's shape: one attempt outside tenacity, the loop only after a failure."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    try:
        return await operation(), 1, sleeps
    except CompletionError as first:
        if attempts == 1 or not is_retryable(first):
            raise
        made = 1
        result = ""
        async for attempt in retrying(
            attempts=attempts,
            initial=1.0,
            maximum=8.0,
            sleep=sleep,
            rand=lambda: 0.5,
            after=first,
        ):
            with attempt:
                made += 1
                result = await operation()
        return result, made, sleeps


@pytest.mark.parametrize(
    "errors",
    [
        (),
        (err(500),),
        (err(500), err(None, "timeout"), err(502)),
        (err(429, "request_quota_exceeded", retry_after="3"), err(503)),
        (err(429, "token_quota_exceeded", x_ratelimit_reset_tokens_minute="12"),),
        (err(500), err(502), err(503), err(504), err(500), err(500)),  # runs out of attempts
        (err(500), err(400, "context_length_exceeded")),  # stops at a permanent error
    ],
)
async def test_fast_path_makes_the_same_attempts_and_waits(
    errors: tuple[CompletionError, ...],
) -> None:
    plain, fast = Flaky(*errors), Flaky(*errors)
    outcomes = []
    for operation, runner in ((plain, run), (fast, run_fast)):
        try:
            outcomes.append(await runner(operation))
        except CompletionError as exc:
            outcomes.append((exc.status, operation.calls))
    assert outcomes[0] == outcomes[1]
    assert plain.calls == fast.calls


def test_a_continued_loop_needs_a_second_attempt() -> None:
    with pytest.raises(ValueError):
        retrying(attempts=1, initial=1.0, maximum=2.0, after=err(500))


async def test_a_hint_beyond_the_cap_is_left_to_the_rate_controller() -> None:
    day_gone = err(
        429,
        "request_quota_exceeded",
        retry_after="33000",
        x_ratelimit_remaining_requests_day="0",
        x_ratelimit_reset_requests_day="33000",
    )
    _, _, slept = await run(Flaky(day_gone))
    assert slept == pytest.approx([0.5])  # the backoff only; acquire then raises QuotaExhausted
