"""Checks across an input's files, made before anything is spent.

Each file is surveyed on its own (:func:`enrich.inputs.discovery.survey_input`). A job reads
every file with the same columns and commits all their chunks as one dataset, so across files:

* every file has every column the job reads (:func:`check_columns`):
  ``<url>: no column 'x' used by the template``;
* a column the job reads has one type in every file (:func:`check_types`), since the parts of
  one dataset share a schema: ``<url>: column 'n' is string here but int64 in <other url>``
  (a column of nulls only, typed ``null`` in Parquet, fits any type);
* no id of ``input.id_column`` repeats, in a file or across files (:func:`check_ids`):
  ``<url>:1051: duplicate id 'r-17' in input.id_column 'review_id' (first at <url>:12)``.

Null ids are found by the survey itself, which knows the line.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import accumulate

import polars as pl
import pyarrow as pa

from enrich.config.schema import InputSpec
from enrich.errors import InputError
from enrich.inputs.base import FileSurvey, InputReader, SourceFile
from enrich.inputs.ids import repeats

__all__ = ["check_columns", "check_ids", "check_types"]


def check_columns(
    sources: Sequence[SourceFile], surveys: Sequence[FileSurvey], wanted: Mapping[str, str]
) -> None:
    """Raise InputError for the first file without a column of ``wanted`` (column -> why)."""
    for source, survey in zip(sources, surveys, strict=True):
        names = set(survey.schema.names)
        for column, why in wanted.items():
            if column not in names:
                raise InputError(f"{source.url}: no column {column!r} {why}")


def check_types(
    sources: Sequence[SourceFile], surveys: Sequence[FileSurvey], columns: Sequence[str]
) -> None:
    """Raise InputError for the first file where a column of ``columns`` has another type."""
    first: dict[str, tuple[pa.DataType, str]] = {}
    for source, survey in zip(sources, surveys, strict=True):
        schema = survey.schema
        for column in columns:
            if column not in schema.names:
                continue
            dtype = schema.field(column).type
            if pa.types.is_null(dtype):
                continue
            seen, where = first.setdefault(column, (dtype, source.url))
            if dtype != seen:
                raise InputError(
                    f"{source.url}: column {column!r} is {dtype} here but {seen} in {where}"
                )


def check_ids(
    readers: Sequence[InputReader], surveys: Sequence[FileSurvey], spec: InputSpec
) -> None:
    """Raise InputError naming the first row whose id an earlier row has, and that row.

    Files without the id column are skipped (:func:`check_columns` names them). Equal
    digests are confirmed by reading both ids, so a digest collision refuses nothing.
    """
    column = spec.id_column
    if column is None:
        return
    parts = [(r, s.ids) for r, s in zip(readers, surveys, strict=True) if s.ids is not None]
    if not parts:
        return
    starts = [0, *accumulate(len(ids) for _, ids in parts)]

    def locate(row: int) -> tuple[InputReader, int]:
        index = bisect_right(starts, row) - 1
        return parts[index][0], row - starts[index]

    for row, earlier in repeats(pl.concat([ids for _, ids in parts])):
        here, there = locate(row), locate(earlier)
        value = _id_at(*here, column)
        if value == _id_at(*there, column):
            raise InputError(
                f"{here[0].where(here[1])}: duplicate id {value!r} in input.id_column "
                f"{column!r} (first at {there[0].where(there[1])})"
            )


def _id_at(reader: InputReader, row: int, column: str) -> str:
    """The id of row ``row`` as the output's ``row_id`` spells it."""
    [(_, table)] = reader.read_slices([(row, row + 1)], [column])
    return str(table.column(0)[0].as_py())
