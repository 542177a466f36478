"""The engine's one port to a chat-completion API: a request in, a completion or an error out.

The engine depends only on :class:`Completer`, the way an httpx client depends only on its
transport. :class:`~enrich.client.CerebrasCompleter` is the implementation that calls the API
through the Cerebras SDK; :class:`FakeCompleter` answers from a plain function, so the
engine's behaviour (sharing, journaling, retries, error rows) is tested without HTTP. A
batch-API client is another implementation, not a branch in the engine.

The contract every implementation keeps:

* :meth:`Completer.complete` returns a :class:`Completion` only for a real completion: a
  response whose body is an error object is an error;
* every failure is raised as a :class:`~enrich.errors.CompletionError` carrying the HTTP
  status, a short code and the response headers, so :mod:`enrich.retry` can classify it and
  the rate controller can re-sync from it. Nothing else escapes, except cancellation.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from enrich.errors import CompletionError
from enrich.usage import NO_USAGE, Usage

__all__ = ["Completer", "Completion", "CompletionRequest", "FakeCompleter", "Handler"]


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """One chat completion to make: the model, the rendered messages, the request parameters.

    ``response_format`` (``{"type": "json_schema", ...}``) asks for structured output; None
    sends none.
    """

    model: str
    messages: Sequence[Mapping[str, str]]
    params: Mapping[str, Any] = field(default_factory=dict)
    response_format: Mapping[str, Any] | None = None

    def body_fields(self) -> dict[str, Any]:
        """Every field of the request body but ``model`` and ``messages``."""
        if self.response_format is None:
            return dict(self.params)
        return {**self.params, "response_format": self.response_format}


@dataclass(slots=True)
class Completion:
    """What one successful chat completion returned, flattened for columnar output."""

    content: str
    finish_reason: str | None = None
    usage: Usage = NO_USAGE
    model: str | None = None
    request_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The reasoning text, when the request asked for it apart (``reasoning_format: parsed``).
    reasoning: str | None = None


class Completer(Protocol):
    """Anything that turns a :class:`CompletionRequest` into a :class:`Completion`."""

    async def complete(self, request: CompletionRequest) -> Completion:
        """Make one completion; raise CompletionError for any failure (see the module doc)."""
        ...


#: What a :class:`FakeCompleter` asks for each request: a completion, or an error to raise.
Handler = Callable[
    [CompletionRequest],
    Completion | CompletionError | Awaitable[Completion | CompletionError],
]


class FakeCompleter:
    """A :class:`Completer` that answers from ``handler``, in memory.

    ``handler`` gets each request and returns the completion, or a CompletionError to raise
    (it may be an ``async`` function, to hold a request in flight). Every request is kept in
    :attr:`requests`, in the order it was made.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[CompletionRequest] = []

    async def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        outcome = self.handler(request)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if isinstance(outcome, CompletionError):
            raise outcome
        return outcome
