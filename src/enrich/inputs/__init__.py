"""Input files: find them, then read them with one reader per format.

* :mod:`~enrich.inputs.discovery` -- :func:`discover` the files of an input (format, size,
  version, row count) and pick each one's reader (:func:`reader_for`).
* :mod:`~enrich.inputs.base` -- :class:`SourceFile` and the :class:`InputReader` interface:
  count rows, list columns, read ``[start, stop)`` row ranges.
* :mod:`~enrich.inputs.parquet`, :mod:`~enrich.inputs.jsonl` -- one reader per format.
* :mod:`~enrich.inputs.columns` -- which input columns are kept in the output and which are read.

All IO goes through :mod:`enrich.storage`.
"""

from enrich.inputs.base import Format, InputReader, SourceFile
from enrich.inputs.columns import kept_columns, needed_columns
from enrich.inputs.discovery import discover, format_of, reader_for

__all__ = [
    "Format",
    "InputReader",
    "SourceFile",
    "discover",
    "format_of",
    "kept_columns",
    "needed_columns",
    "reader_for",
]
