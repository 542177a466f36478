"""The SDK-backed client against the simulator over real HTTP: bodies, streams, every failure.

``CerebrasCompleter.complete`` is the engine's one call to the API. What it returns is compared
with what the simulator generates for the same request (``enrich.sim.model.generate``, counted
with ``enrich.tokens``), so the expected values come from the provider's contract, not from the
client. Bodies the simulator never sends (unparseable JSON, a 200 without choices) come from a
few-line aiohttp server, still over HTTP: the SDK is never mocked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from support import API_KEY, serving, simulator

from enrich.client import CerebrasCompleter, parse_completion
from enrich.completer import Completion, CompletionRequest
from enrich.errors import CompletionError
from enrich.retry import is_retryable, leaves_rows_pending
from enrich.sim.config import Faults, SimConfig
from enrich.sim.harness import ThreadedSimulator
from enrich.sim.model import Generation, chunk_content, generate
from enrich.sim.protocol import FAULT_ERRORS, ApiError, invalid, model_not_found
from enrich.sim.server import NOMINAL_PROMPT_TOKENS_PER_SECOND, NOMINAL_TOKENS_PER_SECOND
from enrich.tokens import count_prompt_tokens, count_text_tokens
from enrich.usage import Usage

MODEL = "gpt-oss-120b"
MESSAGES = [
    {"role": "system", "content": "Classify the review."},
    {"role": "user", "content": "Rating 4: the kettle boils fast and pours without dripping."},
]
PARAMS = {"max_completion_tokens": 48, "temperature": 0}
# Headers the provider sends on every response, errors included.
RATE_HEADERS = ("x-ratelimit-remaining-tokens-minute", "x-ratelimit-limit-requests-day")


@asynccontextmanager
async def client_for(
    base_url: str, *, api_key: str = API_KEY, timeout_s: float = 60.0
) -> AsyncIterator[CerebrasCompleter]:
    """A client built on the running loop (its transport binds to it), closed afterwards."""
    client = CerebrasCompleter(api_key=api_key, base_url=base_url, timeout=timeout_s)
    try:
        yield client
    finally:
        await client.aclose()


async def complete(
    base_url: str, params: dict[str, Any] | None = None, **options: Any
) -> Completion:
    async with client_for(base_url, **options) as client:
        request = CompletionRequest(MODEL, MESSAGES, PARAMS if params is None else params)
        return await client.complete(request)


async def failure(
    base_url: str, params: dict[str, Any] | None = None, **options: Any
) -> CompletionError:
    """The CompletionError a call raises (and nothing else)."""
    with pytest.raises(CompletionError) as raised:
        await complete(base_url, params, **options)
    return raised.value


def expected_generation(params: dict[str, Any]) -> Generation:
    request = {"model": MODEL, "messages": MESSAGES, **params}
    return generate(request, max_default=SimConfig().max_completion_default)


# -- success --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_completion_carries_the_generated_text_usage_and_timings(
    sim: ThreadedSimulator, stream: bool
) -> None:
    params = {**PARAMS, "stream": stream}
    generated = expected_generation(PARAMS)
    if stream:  # the text arrives in several deltas, to be joined in order
        assert len(chunk_content(generated.content)) > 1
    completion = await complete(sim.base_url, params)

    prompt_tokens = count_prompt_tokens(MESSAGES)
    usage = completion.usage
    assert completion.content == generated.content
    assert completion.finish_reason == generated.finish_reason == "stop"
    assert usage.prompt_tokens == prompt_tokens
    assert usage.completion_tokens == count_text_tokens(generated.content)
    assert usage.total_tokens == prompt_tokens + usage.completion_tokens
    assert usage.cached_tokens == 0
    # time_info: a stream carries it (with usage) on its last chunk only.
    assert usage.prompt_time == pytest.approx(prompt_tokens / NOMINAL_PROMPT_TOKENS_PER_SECOND)
    assert usage.completion_time == pytest.approx(
        usage.completion_tokens / NOMINAL_TOKENS_PER_SECOND
    )
    timings = (usage.queue_time, usage.prompt_time, usage.completion_time)
    assert None not in timings
    assert usage.total_time == pytest.approx(sum(t for t in timings if t is not None))
    assert completion.model == MODEL
    assert completion.request_id is not None and completion.request_id.startswith("chatcmpl-")
    assert all(name in completion.headers for name in RATE_HEADERS)
    assert sim.stats.completed == 1
    assert sim.stats.completion_tokens == completion.usage.completion_tokens


async def test_a_stream_cut_by_the_budget_ends_with_length_from_its_last_chunk(
    sim: ThreadedSimulator,
) -> None:
    params = {**PARAMS, "max_completion_tokens": 3}
    streamed = await complete(sim.base_url, {**params, "stream": True})
    whole = await complete(sim.base_url, params)
    assert streamed.finish_reason == whole.finish_reason == "length"
    assert streamed.usage.completion_tokens == whole.usage.completion_tokens == 3
    assert streamed.content == whole.content == expected_generation(params).content


async def test_a_paced_stream_is_assembled_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deltas sent one by one over time (ttft, tokens per second) join to the same text."""
    with simulator(monkeypatch, ttft=0.01, tokens_per_second=5_000) as paced:
        streamed = await complete(paced.base_url, {**PARAMS, "stream": True})
    assert streamed.content == expected_generation(PARAMS).content
    assert streamed.usage.prompt_time == pytest.approx(0.01)  # the configured ttft, from time_info
    assert streamed.usage.completion_time == pytest.approx(streamed.usage.completion_tokens / 5_000)


async def test_the_api_key_is_sent_as_a_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulator(monkeypatch, api_keys=frozenset({"csk-right"})) as locked:
        completion = await complete(locked.base_url, api_key="csk-right")
        refused = await failure(locked.base_url, api_key="csk-wrong")
    assert completion.content == expected_generation(PARAMS).content
    assert (refused.status, refused.code) == (401, "wrong_api_key")
    assert refused.message == "HTTP 401: Wrong API Key"


# -- error responses ------------------------------------------------------------------------------

# What a case does to the simulator before the call.
Setup = Callable[[ThreadedSimulator], object]
TOO_LONG = 10_000_000
CONTEXT = (
    "Please reduce the length of the messages or completion. Current length is "
    f"{count_prompt_tokens(MESSAGES) + TOO_LONG} while limit is {SimConfig().context_length}"
)
TPM = "Tokens per minute limit exceeded - too many tokens processed."
# id -> (what is done to the simulator, request parameters, the error response it sends)
ERROR_RESPONSES: dict[str, tuple[Setup | None, dict[str, Any], ApiError]] = {
    "404": (None, {"model": "no-such-model"}, model_not_found("no-such-model")),
    "400-schema": (
        None,
        {"max_completion_tokens": -5},
        invalid("max_completion_tokens: must be an integer >= -1"),
    ),
    "400-context": (
        None,
        {"max_completion_tokens": TOO_LONG},
        ApiError(400, CONTEXT, "invalid_request_error", "messages", "context_length_exceeded"),
    ),
    "429-queue": (lambda s: s.set_faults(fail_429=1.0), {}, FAULT_ERRORS["fail_429"]),
    "500": (lambda s: s.set_faults(fail_500=1.0), {}, FAULT_ERRORS["fail_500"]),
    "503": (lambda s: s.set_faults(fail_503=1.0), {}, FAULT_ERRORS["fail_503"]),
    "429-quota": (
        lambda s: s.set_limits(tpm=10),
        {},
        ApiError(429, TPM, "too_many_tokens_error", "quota", "token_quota_exceeded"),
    ),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("setup", "params", "sent"), ERROR_RESPONSES.values(), ids=ERROR_RESPONSES.keys()
)
async def test_error_statuses_become_completion_errors_with_the_flat_body(
    sim: ThreadedSimulator,
    setup: Setup | None,
    params: dict[str, Any],
    sent: ApiError,
    stream: bool,
) -> None:
    if setup is not None:
        setup(sim)
    body = {**PARAMS, **params, "stream": stream}
    model = body.pop("model", MODEL)
    with pytest.raises(CompletionError) as raised:
        async with client_for(sim.base_url) as client:
            await client.complete(CompletionRequest(model, MESSAGES, body))
    error = raised.value
    assert (error.status, error.code) == (sent.status, sent.code)
    assert error.message == f"HTTP {sent.status}: {sent.message}"
    assert all(name in error.headers for name in RATE_HEADERS)
    assert sim.stats.completed == 0


async def test_a_200_whose_body_is_an_error_is_a_completion_error(sim: ThreadedSimulator) -> None:
    sim.set_faults(error_body=1.0)
    error = await failure(sim.base_url)
    assert (error.status, error.code) == (500, "internal_error")
    assert error.message == "error in a 200 response: Internal server error."
    assert all(name in error.headers for name in RATE_HEADERS)


async def test_an_error_event_in_a_stream_is_a_completion_error(sim: ThreadedSimulator) -> None:
    sim.set_faults(error_body=1.0)
    error = await failure(sim.base_url, {**PARAMS, "stream": True})
    assert (error.status, error.code) == (500, "internal_error")
    assert "Internal server error." in error.message


# -- bodies the simulator never sends, from a server of our own ----------------------------------

UNPARSEABLE = "unparseable response body: "
ERROR_IN_200 = "error in a 200 response: "


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (b"<html>Bad gateway</html>", 502, "bad_body", "unparseable response body: "),
        (
            b'{"id": "x", "object": "chat.completion"',
            502,
            "bad_body",
            "unparseable response body: ",
        ),
        (
            b'{"id": "x", "object": "chat.completion"}',
            None,
            "not_a_completion",
            "not a chat completion: no choices",
        ),
        (
            b'{"error": {"message": "overloaded", "code": "busy"}, "status_code": 503}',
            503,
            "busy",
            ERROR_IN_200 + "overloaded",
        ),
    ],
    ids=["html", "truncated-json", "no-choices", "error-with-status"],
)
async def test_a_200_with_a_body_that_is_not_a_completion(
    body: bytes, status: int | None, code: str, message: str
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(
            body=body, content_type="application/json", headers={"x-request-id": "req-1"}
        )

    async with serving(answer) as base_url:
        error = await failure(base_url)
    assert (error.status, error.code) == (status, code)
    assert error.message.startswith(message)


USAGE = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
STOP = {"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "the body is a JSON list, not an object"),
        ({"choices": [], "usage": USAGE}, "empty choices"),
        ({"choices": None, "usage": USAGE}, "no choices"),
        ({"choices": [None], "usage": USAGE}, "choices[0] is not an object"),
        ({"choices": [{"message": None, "finish_reason": "stop"}], "usage": USAGE}, "no message"),
        (
            {
                "choices": [{"message": {"content": ["hi"]}, "finish_reason": "stop"}],
                "usage": USAGE,
            },
            "the content is a list, not a string",
        ),
        (
            {"choices": [{"message": {"content": 7}, "finish_reason": "stop"}], "usage": USAGE},
            "the content is a int, not a string",
        ),
        ({"choices": [STOP]}, "no usage.prompt_tokens"),
        (
            {"choices": [STOP], "usage": {**USAGE, "completion_tokens": "2"}},
            "usage.completion_tokens is not an integer: '2'",
        ),
    ],
    ids=[
        "list-body",
        "empty-choices",
        "null-choices",
        "null-choice",
        "null-message",
        "list-content",
        "number-content",
        "no-usage",
        "string-tokens",
    ],
)
async def test_a_200_that_is_not_a_chat_completion_is_a_classified_error(
    body: Any, reason: str
) -> None:
    """Never an exception of another kind, never a completion: an error the engine can file."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body, headers={"x-request-id": "req-1"})

    async with serving(answer) as base_url:
        error = await failure(base_url)
    assert (error.status, error.code, error.kind) == (None, "not_a_completion", "not_a_completion")
    assert error.message == f"not a chat completion: {reason}"
    assert error.headers["x-request-id"] == "req-1"
    assert is_retryable(error) and not leaves_rows_pending(error)


async def test_response_headers_reach_the_completion() -> None:
    """The rate controller re-syncs from whatever headers the response had."""

    async def answer(request: web.Request) -> web.Response:
        body = (
            b'{"id": "c-1", "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],'
            b' "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}'
        )
        headers = {"x-ratelimit-remaining-tokens-minute": "1234", "x-custom": "kept"}
        return web.Response(body=body, content_type="application/json", headers=headers)

    async with serving(answer) as base_url:
        completion = await complete(base_url)
    assert completion.content == "ok"
    assert completion.headers["x-ratelimit-remaining-tokens-minute"] == "1234"
    assert completion.headers["x-custom"] == "kept"
    # No time_info or cached tokens in the body: unknown timings and zero cached, not a crash.
    assert completion.usage == Usage(5, 1, 6)


# -- transport failures ---------------------------------------------------------------------------


async def test_a_hung_request_times_out(sim: ThreadedSimulator) -> None:
    sim.set_faults(hang=1.0)
    error = await failure(sim.base_url, timeout_s=1.0)
    assert (error.status, error.code) == (None, "timeout")
    assert error.message == "timed out after 1 s"
    assert sim.stats.faults == {"hang": 1}


async def test_a_dropped_connection_is_a_connection_error(sim: ThreadedSimulator) -> None:
    """Not a timeout, though the aiohttp transport raises it as httpx.ConnectTimeout."""
    sim.set_faults(drop=1.0)
    error = await failure(sim.base_url)
    assert (error.status, error.code) == (None, "connection")
    assert error.message.startswith("connection error: ")
    assert sim.stats.faults == {"drop": 1}


@pytest.mark.parametrize("fault", ["stream_drop", "stream_cut"])
async def test_a_stream_cut_short_is_a_retryable_stream_cut_error(fault: str) -> None:
    """Dropped mid-stream, or closed before the last chunk: the deltas so far are no answer."""
    with simulator(faults=Faults(**{fault: 1.0})) as cut:
        error = await failure(cut.base_url, {**PARAMS, "stream": True})
        assert cut.stats.faults == {fault: 1}
    assert (error.status, error.code) == (None, "stream_cut")
    assert error.message.startswith(
        "stream dropped: " if fault == "stream_drop" else "stream ended"
    )
    assert is_retryable(error) and leaves_rows_pending(error)


async def test_stream_faults_spare_a_request_that_does_not_stream() -> None:
    with simulator(faults=Faults(stream_drop=0.5, stream_cut=0.5)) as cut:
        completion = await complete(cut.base_url)
        assert cut.stats.faults == {}
    assert completion.content == expected_generation(PARAMS).content


async def test_nothing_listening_is_a_connection_error() -> None:
    async def empty(request: web.Request) -> web.Response:
        return web.Response()

    async with serving(empty) as base_url:
        pass  # the port is free again
    error = await failure(base_url)
    assert (error.status, error.code) == (None, "connection")


# -- parsing, as a table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "id": "c-1",
                "model": MODEL,
                "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 7,
                    "completion_tokens": 2,
                    "total_tokens": 9,
                    "prompt_tokens_details": {"cached_tokens": 4},
                },
                "time_info": {"queue_time": 0.5, "prompt_time": 1, "total_time": 2.5},
            },
            Completion(
                "hi",
                "stop",
                Usage(7, 2, 9, 4, queue_time=0.5, prompt_time=1.0, total_time=2.5),
                model=MODEL,
                request_id="c-1",
            ),
        ),
        (
            {
                "choices": [{"message": {"content": None}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16},
            },
            Completion("", "length", Usage(7, 9, 16)),
        ),
        (
            {
                "choices": [{"message": {"content": "x"}}],
                "usage": {
                    "prompt_tokens": 7,
                    "completion_tokens": 1,
                    "total_tokens": 8,
                    "prompt_tokens_details": {"cached_tokens": "4"},
                },
                "time_info": {"queue_time": "slow"},
            },
            Completion("x", None, Usage(7, 1, 8)),
        ),
    ],
    ids=["full", "null-content", "malformed-optional-usage"],
)
def test_parse_completion(body: dict[str, Any], expected: Completion) -> None:
    assert parse_completion(body, {"h": "v"}) == replace(expected, headers={"h": "v"})


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({"error": {"message": "boom", "code": "x"}}, 500, "x", "error in a 200 response: boom"),
        ({"error": {"message": "busy"}, "status_code": 503}, 503, "error_body", None),
        ({"error": "flat string"}, 500, "error_body", None),
        ({"object": "chat.completion"}, None, "not_a_completion", None),
    ],
    ids=["error-object", "status-code", "error-string", "no-choices"],
)
def test_parse_completion_refuses_error_shaped_bodies(
    body: dict[str, Any], status: int | None, code: str, message: str | None
) -> None:
    with pytest.raises(CompletionError) as raised:
        parse_completion(body, {"h": "v"})
    error = raised.value
    assert (error.status, error.code) == (status, code)
    assert error.headers == {"h": "v"}
    if message is not None:
        assert error.message == message
