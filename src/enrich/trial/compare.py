"""Variants side by side, pure: agreement per field, accuracy against a gold column.

Values are compared as a person would read them: text without surrounding space and case,
numbers by value (``4`` equals ``4.0`` and ``"4"``), lists as sets of such values. A row
where either side has no value (an error row, a skipped step) does not agree: agreement and
accuracy are shares of all the sampled rows, so a variant that fails more agrees less.

:func:`gold_field` decides what ``--gold COL[=FIELD]`` compares with: the named field, else
the typed field called ``COL``, else the only typed field, else (a job without typed fields)
the completion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from enrich.errors import ConfigError
from enrich.trial.figures import FieldRef

__all__ = ["COMPLETION", "agreement", "gold_field", "normal", "same"]

#: What a job without typed fields is compared on.
COMPLETION = "completion"


def normal(value: Any) -> Any:
    """``value`` as compared: stripped case-folded text, a number, a frozenset of those."""
    if value is None:
        return None
    if isinstance(value, list):
        return frozenset(normal(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().casefold()
    try:
        return float(text)
    except ValueError:
        return text


def same(a: Any, b: Any) -> bool:
    """Whether two values agree (:func:`normal`); a missing value agrees with nothing."""
    left, right = normal(a), normal(b)
    return left is not None and right is not None and left == right


def agreement(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """The share of rows on which ``a`` and ``b`` agree (None: no rows)."""
    if not a:
        return None
    return sum(same(x, y) for x, y in zip(a, b, strict=True)) / len(a)


def gold_field(spec: str, fields: Sequence[FieldRef], where: str) -> tuple[str, str]:
    """``(gold column, field label)`` of ``--gold COL[=FIELD]``; a field the job does not
    have, or a choice left open, is a one-line error listing the fields."""
    column, _, named = spec.partition("=")
    labels = [f.label for f in fields]
    if named:
        if named not in labels and not (named == COMPLETION and not fields):
            raise ConfigError(
                f"{where}: --gold {spec}: no field {named!r} (fields: {_list(labels)})"
            )
        return column, named
    if not fields:
        return column, COMPLETION
    matches = [f.label for f in fields if f.label.rpartition(".")[2] == column]
    if len(matches) == 1:
        return column, matches[0]
    if len(fields) == 1:
        return column, fields[0].label
    raise ConfigError(
        f"{where}: --gold {spec}: say which field it grades, e.g. --gold {column}="
        f"{labels[0]} (fields: {_list(labels)})"
    )


def _list(labels: Sequence[str]) -> str:
    return ", ".join(labels) or "none"
