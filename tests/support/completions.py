"""Answers for the engine's port: what a ``FakeCompleter`` handler returns for a request.

``answer`` completes any request at once, with the usage the rate controller reserved for its
prompt; a test wraps it to hold a request in flight or to fail some of them.
"""

from __future__ import annotations

from enrich.completer import Completion, CompletionRequest
from enrich.tokens import count_prompt_tokens
from enrich.usage import Usage


def user_text(request: CompletionRequest) -> str:
    """The text of the request's last (user) message."""
    return request.messages[-1]["content"]


def answer(request: CompletionRequest) -> Completion:
    """A completion whose usage is what the rate controller reserved for the prompt."""
    prompt = count_prompt_tokens(request.messages)
    return Completion(
        content=f"label for {user_text(request)}",
        finish_reason="stop",
        usage=Usage(prompt_tokens=prompt, completion_tokens=3, total_tokens=prompt + 3),
        model=request.model,
        request_id=f"req-{abs(hash(user_text(request)))}",
    )
