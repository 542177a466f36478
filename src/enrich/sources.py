"""Input files: discover them, read their schema, read row ranges of them.

An input (:class:`~enrich.config.InputSpec`) names one file, a directory or a glob of Parquet or
JSONL files (JSONL optionally gzipped). :func:`discover` lists and counts them;
:func:`read_slices` reads ``[start, stop)`` row ranges of one file as Arrow tables, in one
sequential pass that skips the ranges nobody asked for. All IO goes through
:mod:`enrich.storage`.

Rows of a JSONL file are its non-blank lines; row ``i`` is the ``i``-th of them, so row numbers
agree between counting and reading. JSONL types are inferred per file from the first
:data:`SAMPLE_ROWS` rows (the same rows for every read, so every slice of a file has the same
schema):

* all booleans -> ``bool``; all integers -> ``int64``; integers and floats -> ``float64``;
  all strings -> ``string``;
* anything else (nested objects or lists, mixed kinds, or only nulls) -> ``string``, holding
  strings as they are and other values as compact JSON text.

A later value that does not fit its column's type (a string in an ``int64`` column, say) is an
:class:`InputError` naming the file, line and column, rather than a silent change of type.
Keys absent from a row are null; keys that first appear after the sample rows are ignored.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from typing import IO, Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from enrich import storage
from enrich.config import InputSpec
from enrich.errors import InputError, StorageError

__all__ = [
    "SAMPLE_ROWS",
    "SourceFile",
    "discover",
    "needed_columns",
    "output_columns",
    "read_slices",
    "schema_columns",
]

Format = Literal["parquet", "jsonl"]
SAMPLE_ROWS = 1000
_EXTENSIONS: dict[str, tuple[Format, str | None]] = {
    ".parquet": ("parquet", None),
    ".pq": ("parquet", None),
    ".jsonl": ("jsonl", None),
    ".ndjson": ("jsonl", None),
    ".json": ("jsonl", None),
    ".jsonl.gz": ("jsonl", "gzip"),
    ".ndjson.gz": ("jsonl", "gzip"),
    ".json.gz": ("jsonl", "gzip"),
}
_BOM = b"\xef\xbb\xbf"


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


def discover(spec: InputSpec) -> list[SourceFile]:
    """Every file of the input, sorted by URL, with its format and row count.

    Raises InputError when nothing matches, a file's format is unknown or corrupt, or the input
    has no rows at all; StorageError when storage cannot be reached.
    """
    objects = storage.list_inputs(spec.path, spec.storage_options)
    if not objects:
        raise InputError(f"{spec.path}: no input files match")
    root = _root(spec.path, spec.storage_options, [o.url for o in objects])
    sources = []
    for obj in objects:
        fmt, compression = _format_of(obj.url, spec)
        key = obj.url[len(root) + 1 :] if obj.url.startswith(root + "/") else _basename(obj.url)
        partial = SourceFile(obj.url, key, fmt, obj.size, obj.version, 0, compression)
        rows = _count_rows(partial, spec)
        sources.append(SourceFile(obj.url, key, fmt, obj.size, obj.version, rows, compression))
    if not any(s.num_rows for s in sources):
        raise InputError(f"{spec.path}: the input is empty (no rows in {len(sources)} file(s))")
    return sources


def schema_columns(source: SourceFile, spec: InputSpec) -> list[str]:
    """The file's column names (JSONL: the keys of its first SAMPLE_ROWS rows, in order)."""
    if source.format == "parquet":
        with _open(source, spec) as fh:
            return list(_parquet_file(source, fh).schema_arrow.names)
    with _open(source, spec) as fh:
        rows = [_parse(source, n, line) for n, line in islice(_lines(source, fh), SAMPLE_ROWS)]
    return list(_infer_schema(rows))


def output_columns(available: Sequence[str], spec: InputSpec) -> list[str]:
    """The input columns kept in the output: ``spec.columns`` (checked), else all."""
    if spec.columns is None:
        return list(available)
    _require(available, spec.columns, spec.path, "input.columns lists")
    return list(spec.columns)


def needed_columns(available: Sequence[str], spec: InputSpec, extra: Iterable[str]) -> list[str]:
    """Columns to read: the output columns, the id column and ``extra`` (e.g. the template's).

    In the input's order; raises InputError if the id column or an extra column is missing.
    """
    wanted = set(output_columns(available, spec))
    if spec.id_column is not None:
        _require(available, [spec.id_column], spec.path, "input.id_column names")
        wanted.add(spec.id_column)
    more = list(extra)
    _require(available, more, spec.path, "the prompt uses")
    wanted.update(more)
    return [c for c in available if c in wanted]


def read_slices(
    source: SourceFile,
    spec: InputSpec,
    bounds: Sequence[tuple[int, int]],
    columns: Sequence[str] | None,
) -> Iterator[tuple[tuple[int, int], pa.Table]]:
    """Yield ``((start, stop), table)`` for each requested row range, in order.

    ``bounds`` must be sorted and non-overlapping. The file is read once, front to back; rows
    outside every range are skipped without building tables, and at most one slice (plus one
    Parquet row group) is held at a time. ``columns=None`` reads every column.
    """
    _check_bounds(source, bounds)
    if source.format == "parquet":
        return _parquet_slices(source, spec, bounds, columns)
    return _jsonl_slices(source, spec, bounds, columns)


# -- discovery --------------------------------------------------------------------------------


def _basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _root(path: str, storage_options: dict[str, Any], urls: list[str]) -> str:
    """The fixed part of the input path (a glob's prefix, a directory, a file's parent)."""
    cut = min((path.index(ch) for ch in "*?[" if ch in path), default=None)
    if cut is not None:
        fixed = path[:cut].rsplit("/", 1)[0] if "/" in path[:cut] else "."
    else:
        fixed = path.rstrip("/")
    fs, resolved = storage.filesystem(fixed, storage_options)
    root = storage.qualify(fs, resolved).rstrip("/")
    if urls == [root]:  # a single file named directly: its key is its name
        return root.rsplit("/", 1)[0]
    return root


def _format_of(url: str, spec: InputSpec) -> tuple[Format, str | None]:
    name = _basename(url).lower()
    compression = "gzip" if name.endswith(".gz") else None
    if spec.format is not None:
        return spec.format, compression
    for ext, found in sorted(_EXTENSIONS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(ext):
            return found
    known = ", ".join(sorted(_EXTENSIONS))
    raise InputError(
        f"{url}: unknown file extension (expected one of {known}, or set input.format)"
    )


def _count_rows(source: SourceFile, spec: InputSpec) -> int:
    with _open(source, spec) as fh:
        if source.format == "parquet":
            return int(_parquet_file(source, fh).metadata.num_rows)
        # Check the encoding while counting (cheap), so a bad byte anywhere in the file fails
        # the job before any request is sent, not when its chunk comes round.
        count = 0
        for number, line in _lines(source, fh):
            _check_utf8(source, number, line)
            count += 1
        return count


def _require(available: Sequence[str], wanted: Iterable[str], path: str, what: str) -> None:
    present = set(available)
    for name in wanted:
        if name not in present:
            raise InputError(
                f"{path}: {what} column {name!r} that the input does not have "
                f"(has: {', '.join(available)})"
            )


def _check_bounds(source: SourceFile, bounds: Sequence[tuple[int, int]]) -> None:
    previous = 0
    for start, stop in bounds:
        if not previous <= start <= stop <= source.num_rows:
            raise ValueError(
                f"{source.url}: row ranges must be sorted, non-overlapping and within "
                f"0..{source.num_rows}; got {list(bounds)}"
            )
        previous = stop


# -- reading ----------------------------------------------------------------------------------


def _open(source: SourceFile, spec: InputSpec) -> closing[IO[bytes]]:
    return closing(storage.open_input(source.url, spec.storage_options, source.compression))


def _parquet_file(source: SourceFile, fh: IO[bytes]) -> Any:
    try:
        return pq.ParquetFile(fh)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"{source.url}: not a readable Parquet file ({_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_columns(source: SourceFile, have: Sequence[str], columns: Sequence[str] | None) -> None:
    if columns is not None:
        _require(have, columns, source.url, "reading")


def _no_columns(num_rows: int) -> pa.Table:
    """A table with no columns that still has ``num_rows`` rows."""
    return pa.table({"_": pa.nulls(num_rows)}).drop_columns(["_"])


def _parquet_slices(
    source: SourceFile,
    spec: InputSpec,
    bounds: Sequence[tuple[int, int]],
    columns: Sequence[str] | None,
) -> Iterator[tuple[tuple[int, int], pa.Table]]:
    with _open(source, spec) as fh:
        pf = _parquet_file(source, fh)
        _check_columns(source, pf.schema_arrow.names, columns)
        wanted = list(columns) if columns is not None else None
        meta = pf.metadata
        starts = [0]
        for i in range(pf.num_row_groups):
            starts.append(starts[-1] + meta.row_group(i).num_rows)
        cached: tuple[int, Any] | None = None  # the last row group read, reused by next slice
        for start, stop in bounds:
            if wanted == []:
                yield (start, stop), _no_columns(stop - start)
                continue
            pieces = []
            group = 0
            while group < pf.num_row_groups and starts[group + 1] <= start:
                group += 1
            while group < pf.num_row_groups and starts[group] < stop:
                if cached is None or cached[0] != group:
                    try:
                        cached = (group, pf.read_row_group(group, columns=wanted))
                    except (pa.ArrowException, OSError) as exc:
                        raise InputError(
                            f"{source.url}: row group {group} unreadable ({_first_line(exc)})"
                        ) from None
                lo = max(start, starts[group]) - starts[group]
                hi = min(stop, starts[group + 1]) - starts[group]
                pieces.append(cached[1].slice(lo, hi - lo))
                group += 1
            if pieces:
                table = pa.concat_tables(pieces)
            else:
                table = pf.schema_arrow.empty_table()
                if wanted is not None:
                    table = table.select(wanted)
            yield (start, stop), table


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
        raise InputError(f"{where}: cannot decompress ({_first_line(exc)})") from None
    except OSError as exc:
        raise StorageError(f"{source.url}: read failed ({_first_line(exc)})") from None


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


def _infer_schema(rows: Sequence[dict[str, Any]]) -> dict[str, pa.DataType]:
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


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _column(name: str, dtype: pa.DataType, values: list[Any]) -> pa.Array:
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
            arrays.append(_column(name, schema[name], values))
        except _Misfit as misfit:
            bad = values[misfit.index]
            raise InputError(
                f"{source.url}:{numbers[misfit.index]}: column {name!r} holds "
                f"{_kind(bad)} {bad!r:.40} where earlier rows hold {schema[name]}"
            ) from None
    if not arrays:
        return _no_columns(len(rows))
    return pa.Table.from_arrays(arrays, schema=pa.schema([(n, schema[n]) for n in names]))


def _jsonl_slices(
    source: SourceFile,
    spec: InputSpec,
    bounds: Sequence[tuple[int, int]],
    columns: Sequence[str] | None,
) -> Iterator[tuple[tuple[int, int], pa.Table]]:
    with _open(source, spec) as fh:
        lines = _lines(source, fh)
        sample = list(islice(lines, SAMPLE_ROWS))
        parsed = [_parse(source, n, line) for n, line in sample]
        schema = _infer_schema(parsed)
        _check_columns(source, list(schema), columns)
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
