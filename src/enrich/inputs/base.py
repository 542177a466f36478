"""One small interface for reading an input file, whatever its format.

A :class:`SourceFile` is one input file as discovery found it. An :class:`InputReader` reads one
file of one format; each format implements only what differs: count the file's rows, list its
columns, and read ``[start, stop)`` row ranges of it. The base class does the bookkeeping they
share: holding the file and the input's settings, opening the file through :mod:`enrich.storage`,
and checking the requested ranges up front.

Row ranges are read in one sequential pass that skips the ranges nobody asked for, so at most one
range (plus whatever unit the format reads at once) is held at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import IO, Literal

import pyarrow as pa

from enrich.config.schema import InputSpec
from enrich.storage import open_input

__all__ = ["Bounds", "Format", "InputReader", "Slices", "SourceFile", "first_line", "no_columns"]

Format = Literal["parquet", "jsonl"]
Bounds = tuple[int, int]  # ``[start, stop)`` row numbers of one file
# ``((start, stop), table)`` for each requested row range, in order.
Slices = Iterator[tuple[Bounds, pa.Table]]


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One input file. ``key`` is its name relative to the input root, stable across runs."""

    url: str
    key: str
    format: Format
    size: int
    version: str
    num_rows: int
    compression: str | None = None


class InputReader(ABC):
    """Reads one input file; each subclass knows one format (``format``)."""

    format: Format

    def __init__(self, source: SourceFile, spec: InputSpec) -> None:
        self.source = source
        self.spec = spec

    @abstractmethod
    def count_rows(self) -> int:
        """The file's number of rows; raises InputError when the file is unreadable."""

    @abstractmethod
    def schema_columns(self) -> list[str]:
        """The file's column names, in the file's order."""

    @abstractmethod
    def read_ranges(self, bounds: Sequence[Bounds], columns: Sequence[str] | None) -> Slices:
        """Yield each range of ``bounds`` (already checked) as a table of ``columns``."""

    def read_slices(self, bounds: Sequence[Bounds], columns: Sequence[str] | None) -> Slices:
        """Yield ``((start, stop), table)`` for each requested row range, in order.

        ``bounds`` must be sorted and non-overlapping (checked now, before the first read). The
        file is read once, front to back, lazily. ``columns=None`` reads every column.
        """
        _check_bounds(self.source, bounds)
        return self.read_ranges(bounds, columns)

    def open(self) -> closing[IO[bytes]]:
        source = self.source
        return closing(open_input(source.url, self.spec.storage_options, source.compression))


def _check_bounds(source: SourceFile, bounds: Sequence[Bounds]) -> None:
    previous = 0
    for start, stop in bounds:
        if not previous <= start <= stop <= source.num_rows:
            raise ValueError(
                f"{source.url}: row ranges must be sorted, non-overlapping and within "
                f"0..{source.num_rows}; got {list(bounds)}"
            )
        previous = stop


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def no_columns(num_rows: int) -> pa.Table:
    """A table with no columns that still has ``num_rows`` rows."""
    return pa.table({"_": pa.nulls(num_rows)}).drop_columns(["_"])
