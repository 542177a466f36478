"""Token estimates used before a request is sent.

Cerebras reserves prompt tokens + ``max_completion_tokens`` against the per-minute token bucket
when a request arrives, before it knows the true prompt length we can only estimate. The
estimate errs high (about four characters a token, plus a few tokens of chat framing per
message) so reservations are never smaller than what the provider charges. The bundled
simulator counts with the same rule, standing in for a real tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def count_text_tokens(text: str) -> int:
    """Tokens in a piece of text: one per four characters, rounded up (zero for empty text)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def count_prompt_tokens(messages: Iterable[Mapping[str, object]]) -> int:
    """Prompt tokens of a chat request: each message's content plus its framing."""
    total = 0
    for message in messages:
        content = message.get("content")
        total += TOKENS_PER_MESSAGE + (
            count_text_tokens(content) if isinstance(content, str) else 0
        )
    return total
