"""What one completion used: its tokens and the provider's timings, defined once.

:class:`Usage` is the one list of usage fields. Each field declares, beside its name and
Python type, its Arrow type in the output and where it sits in a ``chat.completion`` body
(``usage.prompt_tokens``, ``time_info.queue_time``...). Everything else is derived from it:
the completion the client returns carries a ``Usage``, so does a row's result, and the
output columns and their Arrow types come from :data:`USAGE_TYPES`, in field order.

Token counts are what a request is charged for: a row that shares another row's request
shows them as zero (:meth:`Usage.shared`); the timings describe the one call and are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pyarrow as pa

__all__ = ["NO_USAGE", "USAGE_FIELDS", "USAGE_TYPES", "Usage", "usage_problem"]


def _count(*path: str, required: bool = False) -> Any:
    """A token count read from ``path`` in the body; 0 when absent. Charged per request.

    A ``required`` count must be in every completion body (:func:`usage_problem`): without it
    the row's cost is unknown.
    """
    return field(
        default=0,
        metadata={
            "arrow": pa.int64(),
            "parse": int,
            "path": path,
            "charged": True,
            "required": required,
        },
    )


def _seconds(*path: str) -> Any:
    """A duration in seconds read from ``path`` in the body; None when absent."""
    return field(
        default=None,
        metadata={
            "arrow": pa.float64(),
            "parse": float,
            "path": path,
            "charged": False,
            "required": False,
        },
    )


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and timings of one chat completion, as the provider reported them."""

    prompt_tokens: int = _count("usage", "prompt_tokens", required=True)
    completion_tokens: int = _count("usage", "completion_tokens", required=True)
    total_tokens: int = _count("usage", "total_tokens", required=True)
    cached_tokens: int = _count("usage", "prompt_tokens_details", "cached_tokens")
    # Part of completion_tokens (and of the budget), reported by reasoning models.
    reasoning_tokens: int = _count("usage", "completion_tokens_details", "reasoning_tokens")
    queue_time: float | None = _seconds("time_info", "queue_time")
    prompt_time: float | None = _seconds("time_info", "prompt_time")
    completion_time: float | None = _seconds("time_info", "completion_time")
    total_time: float | None = _seconds("time_info", "total_time")

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Usage:
        """The usage in a ``chat.completion`` body (or a stream's last chunk), parsed JSON.

        A missing section or field, or a value of the wrong type, reads as the default: the
        provider omits ``time_info`` on some paths and OpenAI-compatible servers omit more.
        The counts a completion must carry are checked first, by :func:`usage_problem`.
        """
        # Once per request on the hot path: each section is looked up once, fields by position.
        values = list(_DEFAULTS)
        for section, entries in _SECTIONS:
            node: Any = body
            for key in section:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict):
                for index, key, parse in entries:
                    value = node.get(key)
                    if isinstance(value, (int, float)):
                        values[index] = parse(value)
        return cls(*values)

    def plus(self, other: Usage) -> Usage:
        """Two requests' usage as one: counts and timings added (a timing neither has stays
        None)."""
        values = {}
        for name in USAGE_FIELDS:
            a, b = getattr(self, name), getattr(other, name)
            values[name] = a if b is None else b if a is None else a + b
        return Usage(**values)

    def shared(self) -> Usage:
        """This usage as seen by a second row with the same request: no tokens charged again."""
        return replace(self, **dict.fromkeys(CHARGED_FIELDS, 0))


USAGE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Usage))
USAGE_TYPES: dict[str, pa.DataType] = {f.name: f.metadata["arrow"] for f in fields(Usage)}
CHARGED_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Usage) if f.metadata["charged"])
_DEFAULTS: tuple[Any, ...] = tuple(f.default for f in fields(Usage))
# (position in Usage, key in its section, how to convert the JSON number)
_Entry = tuple[int, str, Callable[[float], Any]]


def _sections() -> tuple[tuple[tuple[str, ...], tuple[_Entry, ...]], ...]:
    """The body's sections (``("usage",)``, ``("time_info",)``...) and the fields in each."""
    sections: dict[tuple[str, ...], list[_Entry]] = {}
    for index, f in enumerate(fields(Usage)):
        *section, key = f.metadata["path"]
        sections.setdefault(tuple(section), []).append((index, key, f.metadata["parse"]))
    return tuple((section, tuple(entries)) for section, entries in sections.items())


_SECTIONS = _sections()
_REQUIRED: tuple[tuple[str, ...], ...] = tuple(
    f.metadata["path"] for f in fields(Usage) if f.metadata["required"]
)


def usage_problem(body: Mapping[str, Any]) -> str | None:
    """Why ``body`` does not report what the request was charged, or None when it does.

    Every required count (``usage.prompt_tokens``, ``usage.completion_tokens``,
    ``usage.total_tokens``) must be a whole number: a completion without them would be
    committed at zero tokens and zero cost, though the provider billed it.
    """
    for path in _REQUIRED:
        node: Any = body
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, int) or isinstance(node, bool):
            where = ".".join(path)
            return f"no {where}" if node is None else f"{where} is not an integer: {node!r}"
    return None


#: The usage of a request that never completed (an error row).
NO_USAGE = Usage()
