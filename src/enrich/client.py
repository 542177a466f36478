"""The one module that talks to the Cerebras SDK: the engine's :class:`~enrich.completer.Completer`.

:class:`CerebrasCompleter` owns one ``AsyncCerebras`` per process, built the way a high-volume
caller needs it: no blocking TCP warm-up in the constructor, SDK retries off (retries belong to
:mod:`enrich.retry`), and the SDK's aiohttp transport. A call returns a
:class:`~enrich.completer.Completion` parsed once from the raw body with orjson, plus the
response headers the rate controller re-syncs from. Every failure becomes a
:class:`~enrich.errors.CompletionError`, including a 200 whose body is an error object.
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
from enrich.usage import Usage

DEFAULT_BASE_URL = "https://api.cerebras.ai"
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


def parse_completion(body: Mapping[str, Any], headers: Mapping[str, str]) -> Completion:
    """Flatten a ``chat.completion`` body. Raises CompletionError for an error-shaped body."""
    if "error" in body or "choices" not in body:
        error = body.get("error")
        detail = error if isinstance(error, Mapping) else body
        status = body.get("status_code")
        raise CompletionError(
            f"error in a 200 response: {detail.get('message') or detail}",
            status=int(status) if isinstance(status, int) else 500,
            code=str(detail.get("code") or "error_body"),
            headers=headers,
        )
    choice = body["choices"][0]
    message = choice.get("message") or {}
    return Completion(
        content=message.get("content") or "",
        finish_reason=choice.get("finish_reason"),
        usage=Usage.from_body(body),
        model=body.get("model"),
        request_id=body.get("id"),
        headers=headers,
    )


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
        model, messages, params = request.model, request.messages, request.params
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
        raw = await self._sdk.chat.completions.with_raw_response.create(
            model=request.model,
            messages=request.messages,  # type: ignore[arg-type]
            **request.params,
        )
        parts: list[str] = []
        last: dict[str, Any] = {}
        finish: str | None = None
        async for chunk in await raw.parse():  # type: ignore[union-attr]
            data = chunk.model_dump() if hasattr(chunk, "model_dump") else dict(chunk)
            if data.get("error"):
                return parse_completion(data, raw.headers)
            for choice in data.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    parts.append(delta["content"])
                finish = choice.get("finish_reason") or finish
            last = data
        body = {
            "id": last.get("id"),
            "model": last.get("model"),
            "choices": [{"message": {"content": "".join(parts)}, "finish_reason": finish}],
            "usage": last.get("usage"),
            "time_info": last.get("time_info"),
        }
        return parse_completion(body, raw.headers)
