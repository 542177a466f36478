"""Which input columns a job keeps in its output and which it reads.

Pure decisions over a list of available column names and the job's
:class:`~enrich.config.InputSpec`; no IO. A column a setting names that the input does not have is
an :class:`~enrich.errors.InputError` naming the setting, the column and what the input has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from enrich.config.schema import InputSpec
from enrich.errors import InputError

__all__ = ["kept_columns", "needed_columns", "require_columns"]


def kept_columns(available: Sequence[str], spec: InputSpec) -> list[str]:
    """The input columns kept in the output: ``spec.columns`` (checked), else all."""
    if spec.columns is None:
        return list(available)
    require_columns(available, spec.columns, spec.path, "input.columns lists")
    return list(spec.columns)


def needed_columns(available: Sequence[str], spec: InputSpec, extra: Iterable[str]) -> list[str]:
    """Columns to read: the kept columns, the id column and ``extra`` (e.g. the template's).

    In the input's order; raises InputError if the id column or an extra column is missing.
    """
    wanted = set(kept_columns(available, spec))
    if spec.id_column is not None:
        require_columns(available, [spec.id_column], spec.path, "input.id_column names")
        wanted.add(spec.id_column)
    more = list(extra)
    require_columns(available, more, spec.path, "the prompt uses")
    wanted.update(more)
    return [c for c in available if c in wanted]


def require_columns(available: Sequence[str], wanted: Iterable[str], path: str, what: str) -> None:
    """Raise InputError for the first of ``wanted`` that ``available`` lacks."""
    present = set(available)
    for name in wanted:
        if name not in present:
            raise InputError(
                f"{path}: {what} column {name!r} that the input does not have "
                f"(has: {', '.join(available)})"
            )
