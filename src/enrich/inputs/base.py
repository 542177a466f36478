"""One small interface for reading an input file, whatever its format.

A :class:`SourceFile` is one input file as discovery found it, pinned to the version it found
(:class:`~enrich.storage.Pin`). An :class:`InputReader` reads one file of one format; each
format implements only what differs: survey the file (count its rows, check them, say what
schema reads of it yield, digest its ids), list its columns, read ``[start, stop)`` row ranges
of it, and say where a row is (``url:line`` or ``url: row N``). The base class does the
bookkeeping they share: holding the file and the input's settings, opening the file through
:mod:`enrich.storage`, checking the requested ranges up front, and checking what is read:

* before the first range and after each one the file must still be the pinned version, else
  :class:`~enrich.errors.InputChanged` (``<url>: input changed since planning (size 1000 ->
  1200); rerun to plan again``); a read that fails on a changed file says so too;
* each range must have exactly the rows planned, else InputChanged: a short read is never
  handed on.

Row ranges are read in one sequential pass that skips the ranges nobody asked for, so at most one
range (plus whatever unit the format reads at once) is held at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import IO, Literal

import polars as pl
import pyarrow as pa

from enrich.config.schema import InputSpec
from enrich.errors import InputChanged, InputError, StorageError
from enrich.storage import Pin, input_pin, open_input

__all__ = [
    "Bounds",
    "FileSurvey",
    "Format",
    "InputReader",
    "Slices",
    "SourceFile",
    "first_line",
    "no_columns",
    "sniff",
    "wrong_format",
]

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
    pin: Pin | None = None  # None: not pinned (built by hand), reads are not checked


@dataclass(frozen=True, slots=True)
class FileSurvey:
    """What one full pass over a file found, before anything is spent.

    ``schema`` is what every read of the file yields (names and types, in the file's order);
    ``ids`` holds one 64-bit digest per row of ``input.id_column``
    (:func:`enrich.inputs.ids.digest`), or None when no id column was asked for or the file
    has none.
    """

    num_rows: int
    schema: pa.Schema
    ids: pl.Series | None = None


class InputReader(ABC):
    """Reads one input file; each subclass knows one format (``format``)."""

    format: Format

    def __init__(self, source: SourceFile, spec: InputSpec) -> None:
        self.source = source
        self.spec = spec

    @abstractmethod
    def survey(self, id_column: str | None = None) -> FileSurvey:
        """Read the whole file once: rows, schema and ``id_column``'s digests.

        Raises InputError, naming the file and the line or row, for anything a later read
        would fail on that the format lets a pass find: a file of another format, bytes that
        are not UTF-8, a malformed line, a value of the wrong type, a null id.
        """

    @abstractmethod
    def where(self, row: int) -> str:
        """Where row ``row`` is, for a message: ``url:line`` or ``url: row N``."""

    def count_rows(self) -> int:
        """The file's number of rows; raises InputError when the file is unreadable."""
        return self.survey().num_rows

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
        return self._checked(self.read_ranges(bounds, columns))

    def check_unchanged(self) -> None:
        """Raise InputChanged unless the file is still the version it was pinned at."""
        source = self.source
        if source.pin is None:
            return
        change = source.pin.change(input_pin(source.url, self.spec.storage_options))
        if change is not None:
            raise InputChanged(
                f"{source.url}: input changed since planning ({change}); rerun to plan again"
            )

    def _checked(self, slices: Slices) -> Slices:
        """``slices``, each from the pinned version of the file and with the rows planned."""
        self.check_unchanged()
        try:
            for (start, stop), table in slices:
                self.check_unchanged()
                if table.num_rows != stop - start:
                    raise InputChanged(
                        f"{self.source.url}: rows {start}-{stop} read back as {table.num_rows} "
                        f"rows, not the {stop - start} planned (did the file change?); rerun "
                        "to plan again"
                    )
                yield (start, stop), table
        except InputChanged:
            raise
        except (InputError, StorageError):
            self.check_unchanged()  # a rewritten file is the reason a read failed
            raise

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


PARQUET_MAGIC = b"PAR1"
_GZIP_MAGIC = b"\x1f\x8b"
Sniffed = Literal["parquet", "json", "gzip", "other"]
_NAMES: dict[str, str] = {"parquet": "Parquet", "jsonl": "JSONL"}


def sniff(head: bytes) -> Sniffed:
    """What the first bytes of a file say it is (pure)."""
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b"{", b"["):
        return "json"
    return "other"


def wrong_format(source: SourceFile, spec: InputSpec, found: Sniffed) -> InputError | None:
    """The error for a file whose bytes say ``found`` but is read as ``source.format``.

    None when the bytes do not contradict the format. Names where the format came from:
    ``input.format``, or the file's name.
    """
    fmt = source.format
    if spec.format is not None:
        said = f"input.format is {fmt}"
    else:
        other = "jsonl" if fmt == "parquet" else "parquet"
        said = f"its name says {_NAMES[fmt]}; rename it or set input.format: {other}"
    if found == "parquet" and fmt == "jsonl":
        return InputError(f"{source.url}: this is a Parquet file but {said}")
    if found == "json" and fmt == "parquet":
        return InputError(f"{source.url}: looks like JSON lines, not Parquet ({said})")
    if found == "gzip" and fmt == "parquet":
        return InputError(f"{source.url}: is gzip-compressed, not Parquet ({said})")
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def no_columns(num_rows: int) -> pa.Table:
    """A table with no columns that still has ``num_rows`` rows."""
    return pa.table({"_": pa.nulls(num_rows)}).drop_columns(["_"])
