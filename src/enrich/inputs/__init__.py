"""Input files: find them, then read them with one reader per format.

* :mod:`~enrich.inputs.discovery` -- :func:`discover` the files of an input (format, size,
  version, pin, row count; :func:`survey_input` keeps each file's survey) and pick each one's
  reader (:func:`reader_for`).
* :mod:`~enrich.inputs.base` -- :class:`SourceFile` and the :class:`InputReader` interface:
  survey a file, list columns, read ``[start, stop)`` row ranges of the pinned version.
* :mod:`~enrich.inputs.parquet`, :mod:`~enrich.inputs.jsonl` -- one reader per format.
* :mod:`~enrich.inputs.columns` -- which input columns are kept in the output and which are read.
* :mod:`~enrich.inputs.ids` -- digests of row ids, and where a repeated one is.
* :mod:`~enrich.inputs.validation` -- checks across files: every file has the columns read,
  with one type each, and no id repeats.

All IO goes through :mod:`enrich.storage`.
"""

from enrich.inputs.base import FileSurvey, Format, InputReader, SourceFile
from enrich.inputs.columns import kept_columns, needed_columns
from enrich.inputs.discovery import (
    SurveyedInput,
    discover,
    format_of,
    list_sources,
    reader_for,
    survey_input,
)
from enrich.inputs.validation import check_columns, check_ids, check_types

__all__ = [
    "FileSurvey",
    "Format",
    "InputReader",
    "SourceFile",
    "SurveyedInput",
    "check_columns",
    "check_ids",
    "check_types",
    "discover",
    "format_of",
    "kept_columns",
    "list_sources",
    "needed_columns",
    "reader_for",
    "survey_input",
]
