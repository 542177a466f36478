"""The retry policy for chat completions, in one place, built on tenacity.

What is retried (:func:`is_retryable`): 408, 409, 429 and 5xx responses, timeouts and connection
failures (a stream cut short included), as the Cerebras SDK itself does (its own retries are
off), and a 200 whose body is not a chat completion (a proxy's glitch, like a 5xx). Other 4xx,
a context that is too long and output that does not parse are the request's fault: they become
row errors. What a retryable error that outlived every retry becomes is
:func:`leaves_rows_pending`; whose fault an error is once retries are over (the row's, the
job's, nobody's yet) is :func:`verdict`, and when error rows are too many is
:func:`too_many_errors`.

How long to wait (:func:`retrying`): jittered exponential backoff (:func:`backoff`), but never
less than what the server asked for (:func:`retry_after`: its ``retry-after`` headers, or for a
429 the reset of the limit it hit, as :func:`~enrich.ratelimit.classify_429` decides for the rate
controller too). Each attempt goes through the rate controller again, which paces the retries of
everyone together.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    before_nothing,
    retry_if_exception,
    stop_after_attempt,
)

from enrich.errors import CompletionError
from enrich.ratelimit import classify_429, parse_rate_headers, parse_retry_after

__all__ = [
    "JOB_ERRORS",
    "MAX_RETRY_AFTER",
    "MIN_ROWS_FOR_SHARE",
    "Verdict",
    "backoff",
    "is_retryable",
    "leaves_rows_pending",
    "retry_after",
    "retrying",
    "too_many_errors",
    "verdict",
]

# A server hint longer than this is not followed by one request's retry loop; quotas that reset
# hours away are the rate controller's business (it raises QuotaExhausted).
MAX_RETRY_AFTER = 60.0

_RETRY_STATUSES = frozenset({408, 409, 429})
# No whole response: the server may yet answer; ``stream_cut`` is a stream that ended (dropped
# or closed) before its last chunk.
_TRANSPORT_CODES = frozenset({"timeout", "connection", "stream_cut"})
# A whole response that is not a chat completion: retried, but a server that keeps answering
# so is not a chat API, and its rows become errors rather than waiting for a next run.
_NOT_A_COMPLETION_CODES = frozenset({"not_a_completion"})
_NEVER_RETRY_CODES = frozenset({"context_length_exceeded", "invalid_output"})


def is_retryable(error: BaseException) -> bool:
    """Whether another attempt could succeed where this one failed.

    Only a :class:`~enrich.errors.CompletionError` is: with status 408, 409, 429 or >= 500, or
    without status and code ``timeout``, ``connection``, ``stream_cut`` or
    ``not_a_completion``; never with code ``context_length_exceeded`` or ``invalid_output``.
    A server's ``x-should-retry: true|false`` header overrides the status, as in the SDK.
    """
    if not isinstance(error, CompletionError) or error.code in _NEVER_RETRY_CODES:
        return False
    if error.status is None:
        return error.code in _TRANSPORT_CODES or error.code in _NOT_A_COMPLETION_CODES
    should = _header(error, "x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return error.status in _RETRY_STATUSES or error.status >= 500


def leaves_rows_pending(error: BaseException) -> bool:
    """Whether rows whose request failed with ``error``, after every retry, wait for a next run.

    A retryable error does (the server was unreachable, busy or failing: a later run may get
    an answer), except a 200 that is not a chat completion: the server answered, and is not
    a chat API (:func:`verdict` makes it the job's error) rather than busy.
    """
    return is_retryable(error) and not (
        isinstance(error, CompletionError) and error.code in _NOT_A_COMPLETION_CODES
    )


Verdict = Literal["transient", "row", "job"]

#: Statuses that say the job, not the row, is wrong: every other row would fail the same way.
#: What each means for the user (:func:`enrich.engine.sender.job_error_message`).
JOB_ERRORS: dict[int | str, str] = {
    401: "the API refused the key",
    403: "the API refused access",
    404: "the API does not know the model or the endpoint",
    "not_a_completion": "the endpoint does not answer as a chat API",
}


def verdict(error: BaseException) -> Verdict:
    """Whose fault an error is, once retries are over: the job's, the row's, or nobody's yet.

    ``job``: authentication (401), permission (403), an unknown model or path (404), or an
    endpoint whose 200s are not chat completions (code ``not_a_completion``): asking again
    for other rows cannot help, so the run stops. ``transient``: what
    :func:`leaves_rows_pending` keeps for a next run. ``row``: any other error is that
    request's own (a 400 for its prompt, a context overflow, output that does not parse).
    """
    if isinstance(error, CompletionError) and (
        error.status in JOB_ERRORS or (error.status is None and error.code in JOB_ERRORS)
    ):
        return "job"
    return "transient" if leaves_rows_pending(error) else "row"


#: Rows counted before ``execution.max_error_share`` is judged: one early 400 is no trend.
MIN_ROWS_FOR_SHARE = 20


def too_many_errors(errors: int, rows: int, max_share: float) -> bool:
    """Whether ``errors`` of ``rows`` is a broken job: more than ``max_share`` of at least
    ``MIN_ROWS_FOR_SHARE`` rows (a share of 1 never is)."""
    return rows >= MIN_ROWS_FOR_SHARE and errors > max_share * rows


def retry_after(
    error: BaseException, *, now: float | None = None, cap: float = MAX_RETRY_AFTER
) -> float | None:
    """Seconds the server asked us to wait before retrying, at most ``cap``; ``None`` if unsaid.

    ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date, against ``now`` in epoch
    seconds) when present. Otherwise, for a 429, the reset of the limit it hit
    (:func:`~enrich.ratelimit.classify_429`, which knows nothing of the request's reservation
    here): with code ``token_quota_exceeded``, ``x-ratelimit-reset-tokens-minute``; with
    ``request_quota_exceeded``, ``x-ratelimit-reset-requests-day`` when the day's requests are
    gone (the same code serves the per-minute limit, which Cerebras describes in no header);
    without a code, the reset of the bucket the headers show empty. A ``queue_exceeded`` 429 is
    the provider's load, not a limit: no hint.
    """
    if not isinstance(error, CompletionError):
        return None
    seconds = parse_retry_after(error.headers, now=now)
    if error.status == 429:
        snapshot = parse_rate_headers(error.headers)
        seconds = classify_429(error.code, snapshot, retry_after=seconds).wait
    return None if seconds is None else min(seconds, cap)


def backoff(attempt: int, *, initial: float, maximum: float, rand: Callable[[], float]) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): full-jitter exponential.

    Uniform in ``[0, min(maximum, initial * 2 ** (attempt - 1))]`` given ``rand()`` uniform in
    ``[0, 1)``: spreading the retries of many requests that failed together over the whole
    window keeps them from failing together again.
    """
    ceiling = min(maximum, initial * 2.0 ** min(max(attempt, 1) - 1, 64))
    return ceiling * rand()


def retrying(
    *,
    attempts: int,
    initial: float,
    maximum: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    after: BaseException | None = None,
) -> AsyncRetrying:
    """A tenacity loop: at most ``attempts`` tries, retrying only :func:`is_retryable` errors.

    The wait after failed attempt ``n`` is ``max(backoff(n, ...), retry_after(error))``, or just
    the backoff when the server's hint is longer than ``MAX_RETRY_AFTER`` (a daily quota: the
    rate controller decides, and stops the run). The last error is re-raised as itself (not
    wrapped in ``RetryError``). Attempts made so far are
    ``attempt.retry_state.attempt_number``::

        async for attempt in retrying(attempts=5, initial=0.5, maximum=8.0):
            with attempt:
                result = await send()
        attempts = attempt.retry_state.attempt_number

    ``after`` continues a loop whose first attempt was made outside it (the fast path: a
    request that succeeds at once never builds a tenacity loop) and failed with that retryable
    error: the loop first waits as it would have after attempt 1, then makes at most
    ``attempts - 1`` attempts, numbered from 1 in ``retry_state``, so the same attempts and
    waits happen as in a loop that made the first attempt itself.
    """
    done = 0 if after is None else 1
    if attempts < 1 + done:
        raise ValueError(f"attempts must be at least {1 + done}, got {attempts}")

    def wait_after(attempt: int, error: BaseException | None) -> float:
        jittered = backoff(attempt, initial=initial, maximum=maximum, rand=rand)
        hint = retry_after(error, cap=math.inf) if error is not None else None
        if hint is None or hint > MAX_RETRY_AFTER:
            # A hint beyond the cap is a quota that resets far away: the next attempt asks
            # the rate controller at once, which waits for it or raises QuotaExhausted.
            return jittered
        return max(jittered, hint)

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        return wait_after(state.attempt_number + done, error)

    first_wait = 0.0 if after is None else wait_after(1, after)

    async def wait_first(state: RetryCallState) -> None:
        if state.attempt_number == 1:
            await sleep(first_wait)

    return AsyncRetrying(
        stop=stop_after_attempt(attempts - done),
        retry=retry_if_exception(is_retryable),
        wait=wait,
        sleep=sleep,
        before=before_nothing if after is None else wait_first,
        reraise=True,
    )


def _header(error: CompletionError, name: str) -> str | None:
    for key, value in error.headers.items():
        if key.lower() == name:
            return value.strip().lower()
    return None
