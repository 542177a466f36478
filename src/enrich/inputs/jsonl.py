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
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import IO, Any

import orjson
import pyarrow as pa

from enrich.errors import InputError, StorageError
from enrich.inputs.base import Bounds, InputReader, Slices, SourceFile, first_line, no_columns
from enrich.inputs.columns import require_columns

__all__ = ["SAMPLE_ROWS", "JsonlReader", "infer_schema"]

SAMPLE_ROWS = 1000
_BOM = b"\xef\xbb\xbf"


class JsonlReader(InputReader):
    format = "jsonl"

    def count_rows(self) -> int:
        # Check the encoding while counting (cheap), so a bad byte anywhere in the file fails
        # the job before any request is sent, not when its chunk comes round.
        source = self.source
        count = 0
        with self.open() as fh:
            for number, line in _lines(source, fh):
                _check_utf8(source, number, line)
                count += 1
        return count

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
            raise InputError(
                f"{source.url}:{numbers[misfit.index]}: column {name!r} holds "
                f"{_kind(bad)} {bad!r:.40} where earlier rows hold {schema[name]}"
            ) from None
    if not arrays:
        return no_columns(len(rows))
    return pa.Table.from_arrays(arrays, schema=pa.schema([(n, schema[n]) for n in names]))
