"""The one module that talks to the Cerebras SDK: the engine's :class:`~enrich.completer.Completer`.

:class:`CerebrasCompleter` owns one ``AsyncCerebras`` per process, built the way a high-volume
caller needs it: no blocking TCP warm-up in the constructor, SDK retries off (retries belong to
:mod:`enrich.retry`), and the SDK's aiohttp transport. A call returns a
:class:`~enrich.completer.Completion` parsed once from the raw body with orjson, plus the
response headers the rate controller re-syncs from. Every failure becomes a
:class:`~enrich.errors.CompletionError`, including a 200 whose body is an error object or
not a chat completion at all (code ``not_a_completion``) and a stream cut short (code
``stream_cut``): nothing the server sends is trusted before it is checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx
import orjson
from cerebras.cloud.sdk import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncCerebras,
    DefaultAioHttpClient,
)

from enrich.completer import Completion, CompletionRequest
from enrich.errors import CompletionError, ConfigError
from enrich.usage import Usage, usage_problem

CHAT_PATH = "/v1/chat/completions"


def build_sdk_client(
    *, api_key: str, base_url: str, timeout: float = 60.0, max_connections: int = 256
) -> AsyncCerebras:
    """An ``AsyncCerebras`` as a high-volume caller needs it (see the module doc).

    Build it inside the event loop that will use it: the aiohttp transport binds to that loop.
    """
    http_client = DefaultAioHttpClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )
    return AsyncCerebras(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=0,
        warm_tcp_connection=False,
        http_client=http_client,
    )


def api_key_from_env(env_var: str = "CEREBRAS_API_KEY") -> str:
    """The API key from the environment; a one-line ConfigError if it is not set."""
    key = os.environ.get(env_var)
    if not key:
        raise ConfigError(f"environment variable {env_var} is not set (the Cerebras API key)")
    return key


NOT_A_COMPLETION = "not_a_completion"
STREAM_CUT = "stream_cut"


def parse_completion(body: Any, headers: Mapping[str, str]) -> Completion:
    """Flatten a ``chat.completion`` body, parsed JSON; anything else is a CompletionError.

    A body with an ``error`` is the server's error (its ``status_code``, else 500). A body that
    is not a chat completion (:func:`completion_problem`) is code ``not_a_completion``, with
    no status: the server answered 200 with something we cannot trust.
    """
    if isinstance(body, dict) and body.get("error") is not None:
        error = body["error"]
        detail = error if isinstance(error, Mapping) else body
        status = body.get("status_code")
        raise CompletionError(
            f"error in a 200 response: {detail.get('message') or detail}",
            status=int(status) if isinstance(status, int) else 500,
            code=str(detail.get("code") or "error_body"),
            headers=headers,
        )
    problem = completion_problem(body)
    if problem is not None:
        raise CompletionError(
            f"not a chat completion: {problem}", code=NOT_A_COMPLETION, headers=headers
        )
    choice = body["choices"][0]
    model, request_id = body.get("model"), body.get("id")
    reasoning = choice["message"].get("reasoning")
    return Completion(
        reasoning=reasoning if isinstance(reasoning, str) and reasoning else None,
        content=choice["message"].get("content") or "",
        finish_reason=choice.get("finish_reason"),
        usage=Usage.from_body(body),
        model=model if isinstance(model, str) else None,
        request_id=request_id if isinstance(request_id, str) else None,
        headers=headers,
    )


def completion_problem(body: Any) -> str | None:
    """What makes ``body`` not a chat completion, or None when it is one.

    A completion has a first choice with a ``message`` object whose ``content`` is a string
    (or null: no text), a string ``finish_reason`` or none, and the usage it was charged
    (:func:`~enrich.usage.usage_problem`).
    """
    if not isinstance(body, dict):
        return f"the body is a JSON {type(body).__name__}, not an object"
    choices = body.get("choices")
    if not isinstance(choices, list):
        return "no choices" if choices is None else "choices is not a list"
    if not choices:
        return "empty choices"
    choice = choices[0]
    if not isinstance(choice, dict):
        return "choices[0] is not an object"
    message = choice.get("message")
    if not isinstance(message, dict):
        return "no message" if message is None else "the message is not an object"
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        return f"the content is a {type(content).__name__}, not a string"
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and not isinstance(finish_reason, str):
        return "finish_reason is not a string"
    return usage_problem(body)


def _status_error(exc: APIStatusError) -> CompletionError:
    body = exc.body if isinstance(exc.body, Mapping) else {}
    message = body.get("message") or body.get("detail") or str(exc.body or "") or exc.message
    code = body.get("code")
    return CompletionError(
        f"HTTP {exc.status_code}: {message}",
        status=exc.status_code,
        code=str(code) if code else None,
        headers=dict(exc.response.headers),
    )


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first (cycles cut)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _caused_by_timeout(exc: BaseException) -> bool:
    return any(isinstance(e, TimeoutError) for e in _causes(exc))


def _root_cause(exc: BaseException) -> BaseException:
    """The first cause below the SDK's and httpx's wrappers that says something."""
    for e in _causes(exc)[1:]:
        if str(e):
            return e
    return exc


class CerebrasCompleter:
    """The :class:`~enrich.completer.Completer` that calls the API through one AsyncCerebras.

    Build it inside the event loop that will use it (the aiohttp transport binds to that loop)
    and close it with :meth:`aclose`. The API key is held only by the SDK client; it is never
    part of a message, a log line or an artifact.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: float = 60.0,
        max_connections: int = 256,
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self._sdk = build_sdk_client(
            api_key=api_key, base_url=base_url, timeout=timeout, max_connections=max_connections
        )

    async def aclose(self) -> None:
        await self._sdk.close()

    async def complete(self, request: CompletionRequest) -> Completion:
        """Send one chat completion and return it; raise CompletionError on any failure."""
        model, messages, params = request.model, request.messages, request.body_fields()
        try:
            if params.get("stream"):
                return await self._complete_streaming(request)
            # The SDK's generic ``post`` with a body we encode ourselves: the same request,
            # headers, auth and error mapping as ``chat.completions.create``, without its
            # per-call walk of the parameters' type annotations (a third of its CPU per call)
            # or its response models. ``cast_to=httpx.Response`` returns the read response.
            response = await self._sdk.post(
                CHAT_PATH,
                cast_to=httpx.Response,
                content=orjson.dumps({"model": model, "messages": messages, **params}),
            )
            headers = response.headers
            body = orjson.loads(response.content)
        except APIStatusError as exc:
            raise _status_error(exc) from None
        except APIConnectionError as exc:  # APITimeoutError included
            raise self._transport_error(exc) from None
        except orjson.JSONDecodeError as exc:
            raise CompletionError(
                f"unparseable response body: {exc}", status=502, code="bad_body"
            ) from None
        return parse_completion(body, headers)

    def _transport_error(self, exc: APIConnectionError) -> CompletionError:
        """A timeout or a connection error, told apart by what really happened.

        The aiohttp transport reports every connection failure (a dropped connection, a refused
        connect) as ``httpx.ConnectTimeout``, which the SDK raises as APITimeoutError; only a
        request that really ran out of time has a TimeoutError in its chain of causes.
        """
        if isinstance(exc, APITimeoutError) and _caused_by_timeout(exc):
            return CompletionError(f"timed out after {self.timeout:g} s", code="timeout")
        return CompletionError(f"connection error: {_root_cause(exc)}", code="connection")

    async def _complete_streaming(self, request: CompletionRequest) -> Completion:
        """Join a stream's deltas into one completion; a stream cut short is an error.

        The final chunk carries ``finish_reason`` and the usage: a stream that ends without one
        (the connection dropped, or the server closed it early) is code ``stream_cut``, retried
        like a connection error, never a completion made of the deltas that did arrive.
        """
        raw = await self._sdk.chat.completions.with_raw_response.create(
            model=request.model,
            messages=request.messages,  # type: ignore[arg-type]
            **request.body_fields(),
        )
        parts: list[str] = []
        thoughts: list[str] = []
        last: dict[str, Any] = {}
        finish: str | None = None
        try:
            async for chunk in await raw.parse():  # type: ignore[union-attr]
                data = chunk.model_dump() if hasattr(chunk, "model_dump") else dict(chunk)
                if data.get("error"):
                    return parse_completion(data, raw.headers)
                for choice in data.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        parts.append(delta["content"])
                    if delta.get("reasoning"):
                        thoughts.append(delta["reasoning"])
                    finish = choice.get("finish_reason") or finish
                last = data
        except (httpx.TransportError, APIConnectionError) as exc:
            if _caused_by_timeout(exc):
                raise CompletionError(
                    f"timed out after {self.timeout:g} s", code="timeout"
                ) from None
            raise CompletionError(
                f"stream dropped: {_root_cause(exc)}", code=STREAM_CUT, headers=raw.headers
            ) from None
        if finish is None:
            raise CompletionError(
                "stream ended before its last chunk (no finish_reason)",
                code=STREAM_CUT,
                headers=raw.headers,
            )
        body = {
            "id": last.get("id"),
            "model": last.get("model"),
            "choices": [
                {
                    "message": {"content": "".join(parts), "reasoning": "".join(thoughts)},
                    "finish_reason": finish,
                }
            ],
            "usage": last.get("usage"),
            "time_info": last.get("time_info"),
        }
        return parse_completion(body, raw.headers)
