"""JSONL input (optionally gzipped): rows are non-blank lines, types inferred from a sample.

Rows of a JSONL file are its non-blank lines; row ``i`` is the ``i``-th of them, so row numbers
agree between counting and reading. Types are inferred per file from the first
:data:`SAMPLE_ROWS` rows (the same rows for every read, so every slice of a file has the same
schema):

* all booleans -> ``bool``; all integers -> ``int64``; integers and floats -> ``float64``;
  all strings -> ``string``;
* anything else (nested objects or lists, mixed kinds, or only nulls) -> ``string``, holding
  strings as they are and other values as compact JSON text.

A later value that does not fit its column's type (a string in an ``int64`` column, say) is an
:class:`~enrich.errors.InputError` naming the file, line and column, rather than a silent change
of type. Keys absent from a row are null; keys that first appear after the sample rows are
ignored.

:meth:`JsonlReader.survey` parses every line once (orjson), before anything is spent, so every
error a read could meet is found then, with its line: a Parquet file named or configured as
JSONL, bytes that are not UTF-8, a line that is not JSON or not an object, a value that does
not fit its column, a null id.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from itertools import chain, islice
from typing import IO, Any

import orjson
import polars as pl
import pyarrow as pa

from enrich.errors import InputError, StorageError
from enrich.inputs.base import (
    PARQUET_MAGIC,
    Bounds,
    FileSurvey,
    InputReader,
    Slices,
    SourceFile,
    first_line,
    no_columns,
    wrong_format,
)
from enrich.inputs.columns import require_columns
from enrich.inputs.ids import BATCH, digest

__all__ = ["SAMPLE_ROWS", "JsonlReader", "infer_schema"]

SAMPLE_ROWS = 1000
_BOM = b"\xef\xbb\xbf"


class JsonlReader(InputReader):
    format = "jsonl"

    def survey(self, id_column: str | None = None) -> FileSurvey:
        # Every line is parsed and checked now, so a bad line anywhere in the file fails the
        # job before any request is sent, not when its chunk comes round.
        source = self.source
        with self.open() as fh:
            lines = _lines(source, fh)
            first = next(lines, None)
            if first is not None and first[1].startswith(PARQUET_MAGIC):
                error = wrong_format(source, self.spec, "parquet")
                if error is not None:
                    raise error
            head = [] if first is None else [first]
            sample = [
                (number, _parse(source, number, line))
                for number, line in chain(head, islice(lines, SAMPLE_ROWS - len(head)))
            ]
            schema = infer_schema([row for _, row in sample])
            ids = _Ids(source, id_column, schema)
            for number, row in sample:
                ids.add(number, row)
            rows = len(sample) + _check_rest(source, schema, lines, ids)
        return FileSurvey(rows, pa.schema(list(schema.items())), ids.done())

    def where(self, row: int) -> str:
        source = self.source
        with self.open() as fh:
            for index, (number, _) in enumerate(_lines(source, fh)):
                if index == row:
                    return f"{source.url}:{number}"
        return f"{source.url}: row {row}"

    def schema_columns(self) -> list[str]:
        """The keys of the file's first SAMPLE_ROWS rows, in first-seen order."""
        source = self.source
        with self.open() as fh:
            rows = [_parse(source, n, line) for n, line in islice(_lines(source, fh), SAMPLE_ROWS)]
        return list(infer_schema(rows))

    def read_ranges(self, bounds: Sequence[Bounds], columns: Sequence[str] | None) -> Slices:
        source = self.source
        with self.open() as fh:
            lines = _lines(source, fh)
            sample = list(islice(lines, SAMPLE_ROWS))
            parsed = [_parse(source, n, line) for n, line in sample]
            schema = infer_schema(parsed)
            if columns is not None:
                require_columns(list(schema), columns, source.url, "reading")
            names = list(columns) if columns is not None else list(schema)
            cursor = len(sample)  # index of the next row ``lines`` yields
            for start, stop in bounds:
                rows: list[dict[str, Any]] = []
                numbers: list[int] = []
                for i in range(start, min(stop, len(sample))):
                    rows.append(parsed[i])
                    numbers.append(sample[i][0])
                begin = max(start, len(sample))
                if stop > begin:
                    cursor += sum(1 for _ in islice(lines, begin - cursor))
                    if cursor == begin:
                        for number, line in islice(lines, stop - begin):
                            rows.append(_parse(source, number, line))
                            numbers.append(number)
                            cursor += 1
                    if cursor < stop:
                        raise InputError(
                            f"{source.url}: has fewer rows than the {source.num_rows} it had when "
                            "planned (did it change?)"
                        )
                yield (start, stop), _table(source, schema, names, rows, numbers)


def infer_schema(rows: Sequence[dict[str, Any]]) -> dict[str, pa.DataType]:
    """Column name -> Arrow type, from sample rows (rules in the module docstring)."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.items():
            seen = kinds.setdefault(key, set())
            if value is not None:
                seen.add(_kind(value))
    schema = {}
    for key, seen in kinds.items():
        if seen == {"bool"}:
            schema[key] = pa.bool_()
        elif seen == {"int"}:
            schema[key] = pa.int64()
        elif seen and seen <= {"int", "float"}:
            schema[key] = pa.float64()
        else:
            schema[key] = pa.string()
    return schema


# -- the survey -------------------------------------------------------------------------------


def _check_rest(
    source: SourceFile,
    schema: dict[str, pa.DataType],
    lines: Iterator[tuple[int, bytes]],
    ids: _Ids,
) -> int:
    """Parse and check every line after the sample; returns how many there were.

    The survey's hot loop (one orjson parse per line, then a type check of each non-string
    column), written out flat: a call per row costs as much as the parse.
    """
    checks: list[tuple[str, tuple[type, ...]]] = []
    for name, dtype in schema.items():
        if pa.types.is_boolean(dtype):
            checks.append((name, (bool,)))
        elif pa.types.is_integer(dtype):
            checks.append((name, (int,)))
        elif pa.types.is_floating(dtype):
            checks.append((name, (int, float)))
    loads, malformed = orjson.loads, orjson.JSONDecodeError
    column = ids.column if ids.dtype is not None else None
    values = ids.values
    count = 0
    for number, line in lines:
        count += 1
        try:
            row = loads(line)
        except malformed:
            row = _parse(source, number, line)  # raises, naming the line and why
        if type(row) is not dict:
            _parse(source, number, line)  # raises: not an object
        for name, ok in checks:
            value = row.get(name)
            if value is not None:
                kind = type(value)
                if kind not in ok or (kind is int and not _INT64_MIN <= value <= _INT64_MAX):
                    raise _misfit(source, schema, name, value, number)
        if column is not None:
            value = row.get(column)
            if value is None:
                raise ids.null(number)
            values.append(value)
            if len(values) >= BATCH:
                values = ids.flush()
    return count


class _Ids:
    """The digests of a file's ids, a batch at a time; a null id is an error naming its line."""

    def __init__(
        self, source: SourceFile, column: str | None, schema: dict[str, pa.DataType]
    ) -> None:
        self.source = source
        self.column = column
        # None: no id column, or the file does not have it (the job says so).
        self.dtype = schema.get(column) if column is not None else None
        self.values: list[Any] = []
        self._digests: list[pl.Series] = []

    def null(self, number: int) -> InputError:
        return InputError(
            f"{self.source.url}:{number}: input.id_column {self.column!r} is null (every row "
            "needs an id)"
        )

    def add(self, number: int, row: dict[str, Any]) -> None:
        if self.dtype is None or self.column is None:
            return
        value = row.get(self.column)
        if value is None:
            raise self.null(number)
        self.values.append(value)
        if len(self.values) >= BATCH:
            self.flush()

    def flush(self) -> list[Any]:
        """Digest the ids collected so far; returns the (new, empty) list to collect into."""
        if self.values and self.dtype is not None:
            self._digests.append(digest(_column(self.dtype, self.values)))
            self.values = []
        return self.values

    def done(self) -> pl.Series | None:
        if self.dtype is None:
            return None
        self.flush()
        return pl.concat(self._digests) if self._digests else pl.Series([], dtype=pl.UInt64)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _misfit(
    source: SourceFile, schema: dict[str, pa.DataType], name: str, value: Any, number: int
) -> InputError:
    return InputError(
        f"{source.url}:{number}: column {name!r} holds {_kind(value)} {value!r:.40} where "
        f"earlier rows hold {schema[name]}"
    )


# -- lines and values -------------------------------------------------------------------------


def _lines(source: SourceFile, fh: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` for every non-blank line: the file's rows, in order."""
    number = 0
    try:
        for number, line in enumerate(fh, 1):
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            if line and not line.isspace():
                yield number, line
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        where = f"{source.url}:{number + 1}"
        raise InputError(f"{where}: cannot decompress ({first_line(exc)})") from None
    except OSError as exc:
        raise StorageError(f"{source.url}: read failed ({first_line(exc)})") from None


def _parse(source: SourceFile, number: int, line: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        _check_utf8(source, number, line)
        raise InputError(f"{source.url}:{number}: malformed JSON ({exc})") from None
    if not isinstance(value, dict):
        kind = type(value).__name__.replace("NoneType", "null")
        raise InputError(f"{source.url}:{number}: expected a JSON object, got {kind}")
    return value


def _check_utf8(source: SourceFile, number: int, line: bytes) -> None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        raise InputError(
            f"{source.url}:{number}: not valid UTF-8 (byte 0x{line[bad.start]:02x} at "
            f"column {bad.start + 1})"
        ) from None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


# -- building tables --------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _column(dtype: pa.DataType, values: list[Any]) -> pa.Array:
    """An Arrow array of ``values`` as ``dtype``; raises ``_Misfit(index)`` on a bad value."""
    if pa.types.is_string(dtype):
        return pa.array([None if v is None else _json_text(v) for v in values], type=dtype)
    ok: set[type]
    if pa.types.is_boolean(dtype):
        ok = {bool}
    elif pa.types.is_integer(dtype):
        ok = {int}
    else:
        ok = {int, float}
    for i, v in enumerate(values):
        if v is not None and type(v) not in ok:
            raise _Misfit(i)
    try:
        return pa.array(values, type=dtype)
    except (pa.ArrowException, OverflowError):
        for i, v in enumerate(values):
            try:
                pa.array([v], type=dtype)
            except (pa.ArrowException, OverflowError):
                raise _Misfit(i) from None
        raise


class _Misfit(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


def _table(
    source: SourceFile,
    schema: dict[str, pa.DataType],
    names: Sequence[str],
    rows: list[dict[str, Any]],
    numbers: list[int],
) -> pa.Table:
    arrays = []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            arrays.append(_column(schema[name], values))
        except _Misfit as misfit:
            bad = values[misfit.index]
            raise _misfit(source, schema, name, bad, numbers[misfit.index]) from None
    if not arrays:
        return no_columns(len(rows))
    return pa.Table.from_arrays(arrays, schema=pa.schema([(n, schema[n]) for n in names]))
