"""The simulator, exercised through the real Cerebras SDK over real HTTP on 127.0.0.1.

Pure pieces (buckets, fault picking, completions, schema values) are tested table-first;
everything that crosses the wire goes through `Cerebras` / `AsyncCerebras` or a raw HTTP client.
Quota tests drive the buckets with an injected clock instead of waiting.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from cerebras.cloud.sdk import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncCerebras,
    AuthenticationError,
    BadRequestError,
    Cerebras,
    DefaultAioHttpClient,
    InternalServerError,
    NotFoundError,
    RateLimitError,
)
from cerebras.cloud.sdk.types.chat.chat_completion import (
    ChatChunkResponse,
    ChatChunkResponseChoice,
    ChatCompletionResponse,
    ErrorChunkResponse,
)
from support import FakeClock, eventually

from enrich.sim import Faults, Limits, SimConfig, ThreadedSimulator
from enrich.sim.buckets import AccountQuotas, QuotaBucket, go_duration
from enrich.sim.model import fake_json, generate
from enrich.sim.protocol import FAULT_ERRORS
from enrich.tokens import count_prompt_tokens, count_text_tokens

MODEL = "gpt-oss-120b"
MESSAGES: Any = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Describe a quiet harbor at dawn."},
]
RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests-day",
    "x-ratelimit-limit-tokens-minute",
    "x-ratelimit-remaining-requests-day",
    "x-ratelimit-remaining-tokens-minute",
    "x-ratelimit-reset-requests-day",
    "x-ratelimit-reset-tokens-minute",
)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedSimulator]:
    """One default simulator for the tests that do not change its settings."""
    with ThreadedSimulator(SimConfig()) as sim:
        yield sim


@pytest.fixture
def make_server() -> Iterator[Callable[..., ThreadedSimulator]]:
    """Start a simulator with given settings; stopped at the end of the test."""
    with ExitStack() as stack:

        def make(clock: Callable[[], float] | None = None, **settings: Any) -> ThreadedSimulator:
            return stack.enter_context(ThreadedSimulator(SimConfig(**settings), clock=clock))

        yield make


def sync_client(sim: ThreadedSimulator, **options: Any) -> Cerebras:
    return Cerebras(
        api_key="test", base_url=sim.base_url, warm_tcp_connection=False, max_retries=0, **options
    )


def async_client(sim: ThreadedSimulator, **options: Any) -> AsyncCerebras:
    return AsyncCerebras(
        api_key="test",
        base_url=sim.base_url,
        warm_tcp_connection=False,
        max_retries=0,
        http_client=DefaultAioHttpClient(),
        **options,
    )


def answer(response: object) -> ChatCompletionResponse:
    """The response as a completion (the SDK types it as a union with chunks and errors)."""
    assert isinstance(response, ChatCompletionResponse)
    return response


def content_of(response: object) -> str:
    content = answer(response).choices[0].message.content
    assert isinstance(content, str)
    return content


async def collect(stream: Any) -> list[ChatChunkResponse]:
    """The chunks of an SDK stream."""
    chunks = [chunk async for chunk in stream]
    assert all(isinstance(chunk, ChatChunkResponse) for chunk in chunks)
    return chunks


def only_choice(chunk: ChatChunkResponse) -> ChatChunkResponseChoice:
    assert chunk.choices is not None and len(chunk.choices) == 1
    return chunk.choices[0]


def text_of(chunks: list[ChatChunkResponse]) -> str:
    """The content deltas of a stream, joined."""
    deltas = (only_choice(chunk).delta for chunk in chunks)
    return "".join(delta.content or "" for delta in deltas if delta is not None)


# -- pure pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "take", "elapsed", "remaining", "reset_in"),
    [
        (60, 0, 0.0, 60, 0.0),
        (60, 30, 0.0, 30, 30.0),
        (60, 30, 10.0, 40, 20.0),
        (60, 60, 120.0, 60, 0.0),  # refills to capacity, never beyond
        (1000, 400, 6.0, 700, 18.0),
    ],
)
def test_bucket_refills_continuously(
    capacity: int, take: int, elapsed: float, remaining: int, reset_in: float
) -> None:
    clock = FakeClock()
    bucket = QuotaBucket(capacity, 60.0, clock)
    bucket.take(take)
    clock.advance(elapsed)
    assert bucket.remaining() == remaining
    assert bucket.reset_in() == pytest.approx(reset_in)


@pytest.mark.parametrize(
    ("limits", "reserves", "refused_code"),
    [
        (Limits(rpm=2), [10, 10, 10], "request_quota_exceeded"),
        (Limits(tpm=100), [60, 41], "token_quota_exceeded"),
        (Limits(rpd=1), [10, 10], "request_quota_exceeded"),
        (Limits(tpd=50), [50, 1], "token_quota_exceeded"),
        (Limits(), [10**8] * 5, None),
    ],
)
def test_limiter_refuses_without_charging(
    limits: Limits, reserves: list[int], refused_code: str | None
) -> None:
    limiter = AccountQuotas(limits, FakeClock())
    *admitted, last = reserves
    assert all(limiter.admit(n) is None for n in admitted)
    before = limiter.headers()
    refusal = limiter.admit(last)
    assert (refusal.code if refusal else None) == refused_code
    if refusal is not None:
        assert limiter.headers() == before  # nothing was charged
        assert refusal.wait > 0


def test_limiter_refund_and_resize() -> None:
    limiter = AccountQuotas(Limits(tpm=1000), FakeClock())
    assert limiter.admit(600) is None
    limiter.refund(580)
    assert limiter.tpm.remaining() == 980
    limiter.set_limits(Limits(tpm=100))  # keeps the 20 used
    assert limiter.tpm.remaining() == 80
    limiter.set_limits(Limits())
    assert limiter.headers()["x-ratelimit-limit-tokens-minute"] == "1000000000"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (1.5, "1.5s"), (60, "1m0s"), (61.25, "1m1.25s"), (3723, "1h2m3s")],
)
def test_openai_reset_format(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(
    ("faults", "draw", "picked"),
    [
        (Faults(), 0.0, None),
        (Faults(fail_500=1.0), 0.999, "fail_500"),
        (Faults(fail_429=0.25, drop=0.25), 0.2, "fail_429"),
        (Faults(fail_429=0.25, drop=0.25), 0.3, "drop"),
        (Faults(fail_429=0.25, drop=0.25), 0.6, None),
    ],
)
def test_fault_pick(faults: Faults, draw: float, picked: str | None) -> None:
    assert faults.pick(draw) == picked


@pytest.mark.parametrize(
    "bad",
    [lambda: Faults(fail_500=0.7, hang=0.7), lambda: Faults(drop=-0.1), lambda: Limits(rpm=0)],
)
def test_settings_are_validated(bad: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize(
    ("params", "finish", "tokens"),
    [
        ({}, "stop", None),
        ({"max_completion_tokens": 3}, "length", 3),
        ({"max_tokens": 2}, "length", 2),
        ({"max_completion_tokens": 0}, "length", 0),
    ],
)
def test_completion_budget(params: dict[str, Any], finish: str, tokens: int | None) -> None:
    request = {"model": MODEL, "messages": MESSAGES, **params}
    result = generate(request, max_default=48)
    natural = generate({"model": MODEL, "messages": MESSAGES}, max_default=48)
    assert result.finish_reason == finish
    assert result.completion_tokens == count_text_tokens(result.content)
    assert natural.content.startswith(result.content)  # a budget only truncates
    if tokens is not None:
        assert result.completion_tokens == tokens
    else:
        assert 1 <= result.completion_tokens <= 48 + 3


def test_stop_cuts_before_the_sequence() -> None:
    natural = generate({"model": MODEL, "messages": MESSAGES}, max_default=48).content
    word = natural.split()[2]
    cut = generate({"model": MODEL, "messages": MESSAGES, "stop": [word]}, max_default=48)
    assert cut.content == natural[: natural.find(word)]
    assert cut.finish_reason == "stop"


SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
            "spam": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        },
        "required": ["sentiment", "score", "stars", "spam", "tags"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "people": {"type": "array", "items": {"$ref": "#/$defs/person"}},
            "note": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
            "kind": {"const": "review"},
            "when": {"type": ["string", "null"], "format": "date"},
        },
        "required": ["people", "note", "kind"],
        "$defs": {
            "person": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 2},
                    "id": {"type": "string", "format": "uuid"},
                },
                "required": ["name", "id"],
            }
        },
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("seed", range(5))
def test_fake_json_satisfies_schema(schema: dict[str, Any], seed: int) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(fake_json(schema, random.Random(seed), schema), schema)


# -- over HTTP, through the SDK ----------------------------------------------------------


def test_json_completion_body(server: ThreadedSimulator) -> None:
    with sync_client(server) as client:
        response = answer(
            client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_completion_tokens=200
            )
        )
    content = content_of(response)
    assert re.fullmatch(r"chatcmpl-[0-9a-f-]{36}", response.id)
    assert re.fullmatch(r"fp_[0-9a-f]{20}", response.system_fingerprint)
    assert (response.object, response.model) == ("chat.completion", MODEL)
    choice = response.choices[0]
    assert (choice.message.role, choice.finish_reason, choice.index) == ("assistant", "stop", 0)
    usage, info = response.usage, response.time_info
    assert usage is not None and info is not None
    assert usage.prompt_tokens == count_prompt_tokens(MESSAGES)
    assert usage.completion_tokens == count_text_tokens(content)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert info.total_time is not None and info.completion_time is not None
    assert info.total_time >= info.completion_time > 0
    assert isinstance(info.created, float) and abs(info.created - response.created) < 1


async def test_stream_matches_json_and_ends_with_usage(server: ThreadedSimulator) -> None:
    async with async_client(server) as client:
        whole = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        chunks = await collect(
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        )
    first, last = only_choice(chunks[0]), chunks[-1]
    assert first.delta is not None and first.delta.role == "assistant"
    text = text_of(chunks)
    assert text == content_of(whole)  # streaming does not change what is generated
    assert only_choice(last).finish_reason == "stop"
    assert last.usage is not None and last.time_info is not None
    assert last.usage.completion_tokens == count_text_tokens(text)
    assert all(c.usage is None for c in chunks[:-1])


async def test_paced_stream_has_the_same_content(
    make_server: Callable[..., ThreadedSimulator],
) -> None:
    sim = make_server(ttft=0.01, tokens_per_second=100_000)
    async with async_client(sim) as client:
        whole = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        chunks = await collect(
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        )
    assert text_of(chunks) == content_of(whole)


def test_models_and_warming(server: ThreadedSimulator) -> None:
    with sync_client(server) as client:
        listed = [m.id for m in client.models.list().data]
        one = client.models.retrieve("zai-glm-4.7")
        with pytest.raises(NotFoundError):
            client.models.retrieve("no-such-model")
    assert listed == list(SimConfig().models)
    assert one.model_dump() == {
        "id": "zai-glm-4.7",
        "object": "model",
        "created": 0,
        "owned_by": "Cerebras",
    }
    warm = httpx.get(f"{server.base_url}/v1/tcp_warming")
    assert (warm.status_code, warm.json()) == (200, {})
    missing = httpx.get(f"{server.base_url}/v2/elsewhere")
    assert (missing.status_code, missing.content) == (404, b"")
    assert missing.headers["content-type"].startswith("text/plain")


def test_the_public_catalogue_needs_no_key(make_server: Callable[..., ThreadedSimulator]) -> None:
    sim = make_server(
        api_keys=frozenset({"good"}),
        context_length=32768,
        deprecated={"zai-glm-4.7": "2027-01-15"},
        retired={"llama3.1-8b": "2026-05-27"},
    )
    public = httpx.get(f"{sim.base_url}/public/v1/models")
    assert public.status_code == 200
    models = {m["id"]: m for m in public.json()["data"]}
    assert list(models) == ["gpt-oss-120b", "zai-glm-4.7", "llama3.1-8b"]
    gpt = models["gpt-oss-120b"]
    assert gpt["pricing"] == {"prompt": "0.00000035", "completion": "0.00000075"}
    assert gpt["limits"]["max_context_length"] == 32768  # the window it enforces
    assert gpt["limits"]["max_completion_tokens"] == 32768
    assert gpt["capabilities"]["structured_outputs"] and gpt["capabilities"]["reasoning"]
    assert (gpt["deprecated"], gpt["deprecation_date"]) == (False, None)
    assert (models["zai-glm-4.7"]["deprecated"], models["zai-glm-4.7"]["deprecation_date"]) == (
        True,
        "2027-01-15",
    )
    assert models["llama3.1-8b"]["deprecation_date"] == "2026-05-27"
    # What a key may use: no retired model, and it takes the key.
    assert httpx.get(f"{sim.base_url}/v1/models").status_code == 403
    keyed = httpx.get(f"{sim.base_url}/v1/models", headers={"Authorization": "Bearer good"})
    assert [m["id"] for m in keyed.json()["data"]] == ["gpt-oss-120b", "zai-glm-4.7"]
    good = Cerebras(api_key="good", base_url=sim.base_url, warm_tcp_connection=False, max_retries=0)
    with good, pytest.raises(NotFoundError):
        good.chat.completions.create(model="llama3.1-8b", messages=MESSAGES)
    assert sim.stats.requests == 1


@pytest.mark.parametrize(
    "settings",
    [{"deprecated": {"llama-9": "2027-01-01"}}, {"retired": {"gpt-oss-120b": "2026-01-01"}}],
)
def test_a_catalogue_that_contradicts_itself_is_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimConfig(**settings)


@pytest.mark.parametrize(
    ("params", "error", "code", "message"),
    [
        ({"model": "llama-9"}, NotFoundError, "model_not_found", "Model llama-9 does not exist"),
        ({"extra_body": {"foo": 1}}, BadRequestError, "wrong_api_format", "foo: property 'foo'"),
        ({"stop": ["a", "b", "c", "d", "e"]}, BadRequestError, "wrong_api_format", "stop:"),
        (
            {"max_completion_tokens": 131072},
            BadRequestError,
            "context_length_exceeded",
            "Please reduce the length of the messages or completion. Current length is",
        ),
    ],
)
def test_rejected_requests(
    server: ThreadedSimulator,
    params: dict[str, Any],
    error: type[APIStatusError],
    code: str,
    message: str,
) -> None:
    params = {"model": MODEL, "messages": MESSAGES, **params}
    with sync_client(server) as client, pytest.raises(error) as caught:
        client.chat.completions.create(**params)
    body: Any = caught.value.body
    assert body["code"] == code and body["message"].startswith(message)
    assert set(body) == {"message", "type", "param", "code"}
    for header in RATE_LIMIT_HEADERS:
        assert header in caught.value.response.headers


def test_auth(make_server: Callable[..., ThreadedSimulator]) -> None:
    sim = make_server(api_keys=frozenset({"good"}))
    body = {"model": MODEL, "messages": MESSAGES}
    missing = httpx.post(f"{sim.base_url}/v1/chat/completions", json=body)
    assert (missing.status_code, missing.json()) == (403, {"detail": "Not authenticated"})
    assert all(h in missing.headers for h in RATE_LIMIT_HEADERS)
    with sync_client(sim) as client, pytest.raises(AuthenticationError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.body == {
        "message": "Wrong API Key",
        "type": "invalid_request_error",
        "param": "api_key",
        "code": "wrong_api_key",
    }
    good = Cerebras(api_key="good", base_url=sim.base_url, warm_tcp_connection=False, max_retries=0)
    with good:
        assert content_of(good.chat.completions.create(model=MODEL, messages=MESSAGES))


def test_rate_limit_headers_track_reservation_and_refund(
    make_server: Callable[..., ThreadedSimulator],
) -> None:
    clock = FakeClock()
    sim = make_server(clock=clock, limits=Limits(tpm=1000, rpd=100), openai_headers=True)
    prompt = count_prompt_tokens(MESSAGES)
    with sync_client(sim) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=MESSAGES,
            max_completion_tokens=600,
        )
        usage = answer(raw.parse()).usage
        assert usage is not None and usage.total_tokens is not None
        used = usage.total_tokens
        headers = raw.headers
        assert int(headers["x-ratelimit-limit-tokens-minute"]) == 1000
        # 600 + prompt was reserved up front; all but what was used came back.
        assert int(headers["x-ratelimit-remaining-tokens-minute"]) == 1000 - used
        assert float(headers["x-ratelimit-reset-tokens-minute"]) == pytest.approx(used * 60 / 1000)
        assert (
            headers["x-ratelimit-limit-requests-day"],
            headers["x-ratelimit-remaining-requests-day"],
        ) == (
            "100",
            "99",
        )
        assert float(headers["x-ratelimit-reset-requests-day"]) == pytest.approx(864.0)
        assert headers["x-ratelimit-remaining-tokens"] == str(1000 - used)
        # Usage was small, but this reservation no longer fits: refused before any work.
        with pytest.raises(RateLimitError) as caught:
            client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                max_completion_tokens=1000 - prompt,
            )
        body: Any = caught.value.body
        assert body["code"] == "token_quota_exceeded"
        # It fits again once the `used` tokens have flowed back at 1000 a minute.
        assert int(caught.value.response.headers["retry-after"]) == math.ceil(used * 60 / 1000)
        assert sim.stats.completion_tokens == used - prompt
        clock.advance(60)
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_completion_tokens=1000 - prompt,
        )
    assert sim.stats.by_status == {200: 2, 429: 1}


@pytest.mark.parametrize(
    ("limits", "allowed", "code", "message", "retry_after"),
    [
        (Limits(rpm=2), 2, "request_quota_exceeded", "Requests per minute limit exceeded", "30"),
        (Limits(rpd=1), 1, "request_quota_exceeded", "Requests per day limit exceeded", "86400"),
        (Limits(tpd=100), 1, "token_quota_exceeded", "Tokens per day limit exceeded", None),
    ],
)
def test_quota_exhaustion(
    make_server: Callable[..., ThreadedSimulator],
    limits: Limits,
    allowed: int,
    code: str,
    message: str,
    retry_after: str | None,
) -> None:
    clock = FakeClock()
    sim = make_server(clock=clock, limits=limits)
    with sync_client(sim) as client:
        for _ in range(allowed):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=50)
        with pytest.raises(RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=50)
    body: Any = caught.value.body
    assert body == {
        "message": body["message"],
        "type": body["type"],
        "param": "quota",
        "code": code,
    }
    assert body["message"].startswith(message)
    headers = caught.value.response.headers
    assert all(h in headers for h in RATE_LIMIT_HEADERS)
    if retry_after is not None:
        assert headers["retry-after"] == retry_after
    assert sim.stats.by_status == {200: allowed, 429: 1}


def test_limits_change_while_running(make_server: Callable[..., ThreadedSimulator]) -> None:
    sim = make_server(clock=FakeClock(), retry_after=False)
    with sync_client(sim) as client:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert sim.set_limits(rpm=1) == Limits(rpm=1)
        with pytest.raises(RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert "retry-after" not in caught.value.response.headers
        changed = httpx.post(f"{sim.base_url}/_sim/limits", json={"rpm": None, "tpm": 5000})
        assert changed.json() == {"rpm": None, "tpm": 5000, "rpd": None, "tpd": None}
        # Without max_completion_tokens the default 16384 is reserved, more than 5000 a minute.
        with pytest.raises(RateLimitError):
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=100)
        assert httpx.post(f"{sim.base_url}/_sim/limits", json={"rpx": 1}).status_code == 400


def test_faults_change_while_running(server: ThreadedSimulator) -> None:
    with sync_client(server) as client:
        try:
            changed = httpx.post(f"{server.base_url}/_sim/faults", json={"fail_503": 1.0})
            assert changed.json()["fail_503"] == 1.0
            with pytest.raises(InternalServerError):
                client.chat.completions.create(model=MODEL, messages=MESSAGES)
        finally:
            assert server.set_faults(fail_503=0.0) == Faults()
        content_of(client.chat.completions.create(model=MODEL, messages=MESSAGES))
    bad = httpx.post(f"{server.base_url}/_sim/faults", json={"hang": 2})
    assert bad.status_code == 400 and "within 0..1" in bad.json()["detail"]


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ("fail_500", InternalServerError, 500),
        ("fail_503", InternalServerError, 503),
        ("fail_429", RateLimitError, 429),
        ("drop", APIConnectionError, None),
        ("hang", APITimeoutError, None),
    ],
)
async def test_faults(
    make_server: Callable[..., ThreadedSimulator],
    transport: str,
    fault: str,
    error: type[Exception],
    status: int | None,
) -> None:
    sim = make_server(faults=Faults(**{fault: 1.0}))
    # Only a hung request needs a short timeout; the others must answer however busy we are.
    options: dict[str, Any] = {"timeout": 0.3 if fault == "hang" else 60.0}
    if transport == "aiohttp":
        options["http_client"] = DefaultAioHttpClient()
    client = AsyncCerebras(
        api_key="test", base_url=sim.base_url, warm_tcp_connection=False, max_retries=0, **options
    )
    async with client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    if status is not None:
        assert isinstance(caught.value, APIStatusError)
        assert caught.value.status_code == status
        body: Any = caught.value.body
        assert body["code"] == FAULT_ERRORS[fault].code
    if fault == "drop" and transport == "httpx":
        # httpx-aiohttp maps every aiohttp connection error to ConnectTimeout, hence the SDK's
        # APITimeoutError (a subclass of APIConnectionError) on that transport.
        assert not isinstance(caught.value, APITimeoutError)
    # A client that gave up leaves nothing running on the server.
    await eventually(lambda: sim.stats.in_flight == 0)
    stats = sim.stats
    assert (stats.in_flight, stats.faults, stats.requests) == (0, {fault: 1}, 1)


@pytest.mark.parametrize(
    ("shape", "code", "retry_after", "rate_headers"),
    [
        ({}, "queue_exceeded", None, True),
        (
            {"code_429": "rate_limit_exceeded", "retry_after_429": 1, "headers_429": False},
            "rate_limit_exceeded",
            "1",
            False,
        ),
        (
            {"code_429": "too_many_requests", "retry_after_429": 2.5},
            "too_many_requests",
            "2.5",
            True,
        ),
    ],
)
def test_random_429s_take_the_shape_asked_for(
    make_server: Callable[..., ThreadedSimulator],
    shape: dict[str, Any],
    code: str,
    retry_after: str | None,
    rate_headers: bool,
) -> None:
    sim = make_server(limits=Limits(rpm=100))
    sim.set_faults(fail_429=1.0, **shape)
    with sync_client(sim) as client, pytest.raises(RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    headers = caught.value.response.headers
    assert caught.value.body["code"] == code  # type: ignore[index]
    assert headers.get("retry-after") == retry_after
    assert ("x-ratelimit-remaining-tokens-minute" in headers) is rate_headers
    stats = sim.stats
    assert (stats.faults, stats.by_status) == ({"fail_429": 1}, {429: 1})


@pytest.mark.parametrize(
    "changes", [{"code_429": ""}, {"retry_after_429": -1}, {"headers_429": "no"}]
)
def test_the_shape_of_a_429_is_validated(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Faults().replace(changes)


def test_error_body_with_status_200(make_server: Callable[..., ThreadedSimulator]) -> None:
    sim = make_server(faults=Faults(error_body=1.0))
    with sync_client(sim) as client:
        response = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert isinstance(response, ErrorChunkResponse)
        assert response.status_code == 500
        with pytest.raises(InternalServerError):
            for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
                pass
    assert sim.stats.completed == 0


def test_fault_rates_are_seeded(make_server: Callable[..., ThreadedSimulator]) -> None:
    outcomes = []
    for _ in range(2):
        sim = make_server(faults=Faults(fail_500=0.5), seed=7)
        with sync_client(sim) as client:
            run = []
            for _ in range(12):
                try:
                    client.chat.completions.create(model=MODEL, messages=MESSAGES)
                    run.append(200)
                except InternalServerError:
                    run.append(500)
        outcomes.append(run)
    assert outcomes[0] == outcomes[1] and set(outcomes[0]) == {200, 500}


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({}, True),
        ({"seed": 2}, False),
        ({"temperature": 0.5}, False),
        ({"messages": [{"role": "user", "content": "Something else."}]}, False),
        ({"model": "zai-glm-4.7"}, False),
    ],
)
def test_completions_are_deterministic(
    server: ThreadedSimulator, change: dict[str, Any], same: bool
) -> None:
    base: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "seed": 1, "temperature": 0}
    with sync_client(server) as client:
        first = content_of(client.chat.completions.create(**base))
        second = content_of(client.chat.completions.create(**{**base, **change}))
    assert (first == second) is same


def test_structured_output(server: ThreadedSimulator) -> None:
    schema = SCHEMAS[0]
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "review", "strict": True, "schema": schema},
    }
    with sync_client(server) as client:
        structured = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            response_format=response_format,
        )
        loose = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            response_format={"type": "json_object"},
        )
    value = json.loads(content_of(structured))
    assert set(schema["required"]) <= set(value)
    assert value["sentiment"] in {"positive", "negative", "neutral"}
    assert isinstance(value["stars"], int) and 1 <= value["stars"] <= 5
    assert isinstance(json.loads(content_of(loose)), dict)


async def test_stats_count_what_was_served(make_server: Callable[..., ThreadedSimulator]) -> None:
    # Long enough for all four requests to be in flight together, however busy the machine.
    sim = make_server(ttft=2.0)
    other: Any = [{"role": "user", "content": "Another question."}]
    async with async_client(sim) as client:
        await asyncio.gather(
            *(
                client.chat.completions.create(model=MODEL, messages=m)
                for m in (MESSAGES, MESSAGES, other, other)
            )
        )
        with pytest.raises(NotFoundError):
            await client.chat.completions.create(model="nope", messages=MESSAGES)
    stats = sim.stats
    assert stats.requests == 5
    assert stats.by_status == {200: 4, 404: 1}
    assert stats.distinct_requests == 3
    assert stats.prompt_tokens == 2 * count_prompt_tokens(MESSAGES) + 2 * count_prompt_tokens(other)
    assert stats.max_in_flight == 4 and stats.in_flight == 0
    async with httpx.AsyncClient(base_url=sim.base_url) as raw:
        assert (await raw.get("/_sim/stats")).json() == stats.to_json()
        assert (await raw.post("/_sim/reset")).status_code == 200
    assert sim.stats.requests == 0


def test_cli_process() -> None:
    command = [sys.executable, "-m", "enrich.sim", "--port", "0", "--rpm", "5", "--models", "m1,m2"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            match = re.fullmatch(r"enrich sim listening on (http://127\.0\.0\.1:\d+)", line)
            assert match, line
            models = httpx.get(f"{match[1]}/v1/models", headers={"Authorization": "Bearer k"})
            assert [m["id"] for m in models.json()["data"]] == ["m1", "m2"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)  # bounds a hang only
    assert proc.returncode == 0


def test_arrivals_log_every_request_admitted_or_refused(
    make_server: Callable[..., ThreadedSimulator],
) -> None:
    sim = make_server(limits=Limits(rpm=2))
    client = sync_client(sim)
    before = time.time()
    for _ in range(2):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=20)
    with pytest.raises(RateLimitError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=20)
    arrivals = httpx.get(f"{sim.base_url}/_sim/arrivals").json()["arrivals"]
    reserve = count_prompt_tokens(MESSAGES) + 20
    assert [tokens for _, tokens in arrivals] == [reserve] * 3  # the refused one too
    assert before <= arrivals[0][0] <= arrivals[1][0] <= arrivals[2][0] <= time.time()
    httpx.post(f"{sim.base_url}/_sim/reset")
    assert httpx.get(f"{sim.base_url}/_sim/arrivals").json() == {"arrivals": []}
