"""Whether a request fits the model's context window: the one rule, for plans and runs.

A request needs its prompt tokens plus ``max_completion_tokens`` within the model's context
length (the provider refuses it with a 400 otherwise, after the row has waited its turn in
the quota). Prompt tokens are :mod:`enrich.tokens`' estimate, which errs high, as the
provider's own check does not: a prompt within a few tokens of the limit may be refused here
and accepted there.

A row that cannot fit is never sent: :meth:`ContextWindow.overflow` is its error result, kind
``context_overflow``, a request error (reused by a rerun like a 400, since asking again gets
the same answer). :class:`PromptTally` counts a plan's prompts against the window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from enrich.results import Result

__all__ = ["CONTEXT_OVERFLOW", "ContextWindow", "PromptTally"]

CONTEXT_OVERFLOW = "context_overflow"


@dataclass(frozen=True, slots=True)
class ContextWindow:
    """A model's context length and the job's completion budget."""

    context_length: int
    max_completion_tokens: int

    def fits(self, prompt_tokens: int) -> bool:
        return prompt_tokens + self.max_completion_tokens <= self.context_length

    def overflow(self, prompt_tokens: int) -> Result:
        """The error row of a request that cannot fit: nothing sent, nothing paid."""
        return Result(
            completion=None,
            status="error",
            error_kind=CONTEXT_OVERFLOW,
            error=(
                f"prompt of ~{prompt_tokens:,} tokens + max_completion_tokens "
                f"{self.max_completion_tokens:,} cannot fit the model's context of "
                f"{self.context_length:,} tokens; not sent"
            ),
        )


@dataclass(slots=True)
class PromptTally:
    """Prompts counted against a window (None: the context length is unknown, all fit)."""

    window: ContextWindow | None
    rows: int = 0
    overflow_rows: int = 0
    #: Prompt tokens of the rows that fit (the ones that will be sent).
    prompt_tokens: int = 0
    largest_prompt: int = 0

    def add(self, prompt_tokens: Iterable[int], unknown: int = 0) -> None:
        """Count prompts of ``prompt_tokens`` plus up to ``unknown`` tokens not known yet
        (earlier steps' answers): a row overflows when it cannot fit even without them, and
        counts with all of them (the worst case) when it may."""
        window = self.window
        for tokens in prompt_tokens:
            self.rows += 1
            self.largest_prompt = max(self.largest_prompt, tokens + unknown)
            if window is None or window.fits(tokens):
                self.prompt_tokens += tokens + unknown
            else:
                self.overflow_rows += 1

    @property
    def fitting_rows(self) -> int:
        return self.rows - self.overflow_rows

    @property
    def average_prompt_tokens(self) -> float:
        """Average prompt tokens of the rows that fit (0 when none does)."""
        return self.prompt_tokens / self.fitting_rows if self.fitting_rows else 0.0
