"""The provider's wire format, as pure functions: request validation and response bodies.

Validation follows the provider's order: schema (400 `wrong_api_format`, unknown fields are
rejected because the schema forbids additional properties), then the model (404
`model_not_found`), then the context window (400). Bodies are built as dicts and serialised
with orjson; error bodies are flat `{"message", "type", "param", "code"}` objects.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from enrich.tokens import count_prompt_tokens

ACCEPTED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_completion_tokens",
        "max_tokens",
        "min_completion_tokens",
        "min_tokens",
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "n",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "reasoning_format",
        "disable_reasoning",
        "clear_thinking",
        "prediction",
        "prompt_cache_key",
        "service_tier",
        "model_parameters",
        "user",
    }
)

MESSAGE_FIELDS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "reasoning", "tool_calls"}),
    "tool": frozenset({"role", "content", "name", "tool_call_id"}),
}

MAX_STOP_SEQUENCES = 4


class ApiError(Exception):
    """An error response: HTTP status plus the flat body fields."""

    def __init__(self, status: int, message: str, type_: str, param: str | None, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def fields(self) -> dict[str, Any]:
        """The flat error object."""
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    def body(self) -> bytes:
        """The serialised flat error body."""
        return orjson.dumps(self.fields())


def invalid(message: str, param: str = "validation_error") -> ApiError:
    """A 400 `wrong_api_format` error."""
    return ApiError(400, message, "invalid_request_error", param, "wrong_api_format")


QUEUE_EXCEEDED = ApiError(
    429,
    "We're experiencing high traffic right now! Please try again soon.",
    "too_many_requests_error",
    "queue",
    "queue_exceeded",
)


def throttle_fault(code: str) -> ApiError:
    """An injected 429 with `code`: the provider's own `queue_exceeded` body for that code, a
    generic one (as OpenAI-style servers and proxies send) for any other."""
    if code == QUEUE_EXCEEDED.code:
        return QUEUE_EXCEEDED
    return ApiError(429, "Too many requests, please slow down.", "rate_limit_error", None, code)


WRONG_API_KEY = ApiError(401, "Wrong API Key", "invalid_request_error", "api_key", "wrong_api_key")
# Bodies of 500 and 503 have not been observed live; they use the same flat shape.
FAULT_ERRORS = {
    "fail_429": QUEUE_EXCEEDED,
    "fail_500": ApiError(500, "Internal server error.", "server_error", None, "internal_error"),
    "fail_503": ApiError(
        503, "The service is temporarily unavailable.", "server_error", None, "service_unavailable"
    ),
    "error_body": ApiError(500, "Internal server error.", "server_error", None, "internal_error"),
    "fail_400": ApiError(400, "Bad request.", "invalid_request_error", None, "wrong_api_format"),
    "fail_403": ApiError(
        403, "The key may not use this API.", "permission_error", None, "permission_denied"
    ),
}


def model_not_found(model: str) -> ApiError:
    """The 404 for a model that is not in the catalogue."""
    return ApiError(
        404,
        f"Model {model} does not exist or you do not have access to it.",
        "not_found_error",
        "model",
        "model_not_found",
    )


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat request and what the server derives from it before doing any work."""

    body: dict[str, Any]
    model: str
    prompt_tokens: int
    reserve: int
    stream: bool


def parse_chat_request(
    raw: bytes, *, models: Collection[str], context_length: int, reserve_default: int
) -> ChatRequest:
    """Validate a request body; raise `ApiError` on the first problem found.

    `reserve` is what the quota is charged up front: prompt tokens plus `max_completion_tokens`,
    or plus `reserve_default` when unset, or up to the context length when it is -1.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"Request body is not valid JSON: {exc}", "body") from None
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object", "body")
    problems = [f"{k}: property '{k}' is unsupported" for k in body.keys() - ACCEPTED_FIELDS]
    model = body.get("model")
    if not isinstance(model, str):
        problems.append("model: field required (a string)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append("messages: field required (a non-empty list)")
    else:
        problems.extend(_message_problems(messages))
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
        problems.append(
            f"stop: list should have at most {MAX_STOP_SEQUENCES} items, not {len(stop)}"
        )
    elif stop is not None and not isinstance(stop, str | list):
        problems.append("stop: must be a string or a list of strings")
    budget = body.get("max_completion_tokens")
    if budget is None:
        budget = body.get("max_tokens")
    if budget is not None and (
        not isinstance(budget, int) or isinstance(budget, bool) or budget < -1
    ):
        problems.append("max_completion_tokens: must be an integer >= -1")
    if problems:
        raise invalid("\n".join(sorted(problems)))
    assert isinstance(model, str) and isinstance(messages, list)
    if model not in models:
        raise model_not_found(model)
    prompt_tokens = count_prompt_tokens(messages)
    wanted = prompt_tokens + max(budget or 0, 0)
    if wanted > context_length:
        raise ApiError(
            400,
            "Please reduce the length of the messages or completion. "
            f"Current length is {wanted} while limit is {context_length}",
            "invalid_request_error",
            "messages",
            "context_length_exceeded",
        )
    if budget is None:
        reserve = prompt_tokens + reserve_default
    elif budget == -1:
        reserve = context_length
    else:
        reserve = prompt_tokens + budget
    return ChatRequest(body, model, prompt_tokens, reserve, body.get("stream") is True)


def _message_problems(messages: list[Any]) -> list[str]:
    problems: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            problems.append(f"messages.{i}: must be an object")
            continue
        role = message.get("role")
        allowed = MESSAGE_FIELDS.get(role) if isinstance(role, str) else None
        if allowed is None:
            problems.append(f"messages.{i}.role: must be one of {', '.join(MESSAGE_FIELDS)}")
            continue
        for key in message.keys() - allowed:
            where = f"messages.{i}.{role}.{key}"
            problems.append(f"{where}: property '{where}' is unsupported")
    return problems


def completion_body(
    *,
    completion_id: str,
    created: float,
    model: str,
    fingerprint: str,
    content: str,
    finish_reason: str,
    usage: Mapping[str, Any],
    time_info: Mapping[str, Any],
    reasoning: str | None = None,
) -> bytes:
    """A non-streaming `chat.completion` body (null keys omitted, as the live API does);
    `reasoning` is the message's reasoning text (`reasoning_format: parsed`)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning"] = reasoning
    return orjson.dumps(
        {
            "id": completion_id,
            "choices": [
                {
                    "finish_reason": finish_reason,
                    "index": 0,
                    "message": message,
                }
            ],
            "created": int(created),
            "model": model,
            "system_fingerprint": fingerprint,
            "object": "chat.completion",
            "usage": usage,
            "time_info": time_info,
        }
    )


def usage_fields(
    prompt_tokens: int, completion_tokens: int, reasoning_tokens: int | None = None
) -> dict[str, Any]:
    """The `usage` object; a reasoning model's adds `completion_tokens_details`."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
            "reasoning_tokens": reasoning_tokens,
        }
    return usage


def chunk_event(
    completion_id: str,
    created: float,
    model: str,
    fingerprint: str,
    choice: dict[str, Any],
    **extra: Any,
) -> bytes:
    """One SSE `data:` event holding a `chat.completion.chunk`."""
    chunk = {
        "id": completion_id,
        "choices": [choice],
        "created": int(created),
        "model": model,
        "system_fingerprint": fingerprint,
        "object": "chat.completion.chunk",
        **extra,
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def error_event(error: ApiError) -> bytes:
    """A mid-stream error event, which the SDK raises by its `status_code`."""
    return (
        b"data: " + orjson.dumps({"error": error.fields(), "status_code": error.status}) + b"\n\n"
    )


DONE_EVENT = b"data: [DONE]\n\n"
