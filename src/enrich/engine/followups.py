"""Follow-up requests: an answer that one more request can fix is asked once more.

Two answers get a follow-up, each a request of its own (so a request hash of its own, found in
the journal and the index like any other):

* ``empty_length`` (reasoning used the whole ``max_completion_tokens``): the same messages with
  the step's retry kind, a larger budget or a lower ``reasoning_effort``;
* ``invalid_output`` (the answer does not match the output schema): the step's request, the
  answer, and what is wrong with it (:meth:`~enrich.steps.step.RequestKind.repair_messages`).

The joined result (the follow-up's answer, both requests' tokens) takes the first request's
place under its hash, with a kind of its own when it failed again, so a rerun asks neither.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from enrich.errors import CompletionError
from enrich.hashing import RequestHasher
from enrich.results import Result
from enrich.steps.step import RequestKind

__all__ = ["Ask", "Round", "follow_up"]

Messages = Sequence[Mapping[str, str]]


@dataclass(slots=True)
class Round:
    """What a step's requests came to: results by hash, hashes still failing transiently,
    hashes this chunk sent, hashes found in the index whose cost it carries."""

    results: dict[str, Result]
    transient: dict[str, CompletionError]
    sent: set[str]
    paying: set[str]
    requests: int


#: Finds, sends and waits for requests of one kind: ``(kind, hashes, messages) -> Round``.
Ask = Callable[[RequestKind, Sequence[str], Sequence[Messages]], Awaitable[Round]]


async def follow_up(
    ask: Ask,
    first: Round,
    hashes: Sequence[str],
    messages: Sequence[Messages],
    *,
    error_kind: str,
    kind: RequestKind,
    hasher: RequestHasher,
    build: Callable[[Messages, Result], Messages],
    join: Callable[[Result, Result], Result],
) -> None:
    """Ask once more, as ``kind``, for every answer of ``first`` of ``error_kind``.

    ``build`` makes the follow-up's messages from the first request's and its result; ``join``
    makes the one result of both. The joined results replace the first ones in ``first``; a
    follow-up that still fails transiently leaves its row pending.
    """
    todo: dict[str, int] = {}
    for i, h in enumerate(hashes):
        result = first.results.get(h)
        if result is not None and result.error_kind == error_kind:
            todo.setdefault(h, i)
    if not todo:
        return
    again = [build(messages[i], first.results[h]) for h, i in todo.items()]
    again_hashes = [hasher(m) for m in again]
    second = await ask(kind, again_hashes, again)
    first.requests += second.requests
    for h, h2 in zip(todo, again_hashes, strict=True):
        if h2 in second.transient:
            first.transient[h] = second.transient[h2]
            continue
        first.results[h] = join(first.results[h], second.results[h2])
        if h2 in second.sent:
            first.sent.add(h)
        if h2 in second.paying:
            first.paying.add(h)
