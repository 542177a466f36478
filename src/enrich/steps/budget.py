"""Whether a step's ``max_completion_tokens`` leaves a reasoning model room to answer.

A reasoning model spends completion tokens on reasoning before it writes the answer, and they
count against ``max_completion_tokens``: a tight budget ends with ``finish_reason: length``
and no answer, billed (kind ``empty_length``). :func:`budget_warning` is a simple rule until a
sample run measures the model's reasoning: below :data:`REASONING_ROOM` tokens for the step's
``reasoning_effort`` (``medium`` when unset, the provider's default), `enrich plan` warns.
Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["REASONING_ROOM", "budget_warning", "reasons"]

#: Tokens to leave for reasoning alone, by ``reasoning_effort`` (the answer needs more).
REASONING_ROOM: dict[str, int] = {"none": 0, "low": 256, "medium": 1024, "high": 4096}
_REASONING_MODELS = ("gpt-oss",)


def reasons(model: str) -> bool:
    """Whether ``model`` reasons before it answers."""
    return model.startswith(_REASONING_MODELS)


def budget_warning(model: str, params: Mapping[str, Any]) -> str | None:
    """Why ``max_completion_tokens`` looks too small for ``model``'s reasoning, or None."""
    if not reasons(model):
        return None
    effort = params.get("reasoning_effort") or "medium"
    room = REASONING_ROOM.get(str(effort), 0)
    budget = int(params.get("max_completion_tokens") or 0)
    if budget >= room:
        return None
    return (
        f"max_completion_tokens {budget} is small for {model} at reasoning_effort {effort} "
        f"(reasoning alone often takes {room}); answers may come back empty (empty_length): "
        "raise it or lower reasoning_effort"
    )
