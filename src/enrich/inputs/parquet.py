"""Parquet input: row counts and columns from the footer, row ranges by row group.

A row range is cut from the row groups it spans; the last row group read is kept for the next
range, so consecutive ranges inside one group read it once.

A survey reads the footer, and with an id column that column alone, one row group at a time.
A file that is not Parquet is named for what its first bytes say it is (JSON lines, gzip)
when they say so, and is otherwise ``not a readable Parquet file``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from enrich.config.schema import InputSpec
from enrich.errors import InputError
from enrich.inputs.base import (
    Bounds,
    FileSurvey,
    InputReader,
    Slices,
    SourceFile,
    first_line,
    no_columns,
    sniff,
    wrong_format,
)
from enrich.inputs.columns import require_columns
from enrich.inputs.ids import digest, first_null

__all__ = ["ParquetReader"]


class ParquetReader(InputReader):
    format = "parquet"

    def survey(self, id_column: str | None = None) -> FileSurvey:
        source = self.source
        with self.open() as fh:
            pf = _parquet_file(source, fh, self.spec)
            schema = pf.schema_arrow
            if id_column is None or id_column not in schema.names:
                return FileSurvey(int(pf.metadata.num_rows), schema)
            digests = []
            start = 0
            for group in range(pf.num_row_groups):
                values = _read_row_group(source, pf, group, [id_column]).column(0)
                null = first_null(values)
                if null is not None:
                    raise InputError(
                        f"{source.url}: row {start + null}: input.id_column {id_column!r} is "
                        "null (every row needs an id)"
                    )
                digests.append(digest(values))
                start += len(values)
        ids = pl.concat(digests) if digests else pl.Series([], dtype=pl.UInt64)
        return FileSurvey(int(pf.metadata.num_rows), schema, ids)

    def where(self, row: int) -> str:
        return f"{self.source.url}: row {row}"

    def schema_columns(self) -> list[str]:
        with self.open() as fh:
            return list(_parquet_file(self.source, fh, self.spec).schema_arrow.names)

    def read_ranges(self, bounds: Sequence[Bounds], columns: Sequence[str] | None) -> Slices:
        source = self.source
        with self.open() as fh:
            pf = _parquet_file(source, fh, self.spec)
            if columns is not None:
                require_columns(pf.schema_arrow.names, columns, source.url, "reading")
            wanted = list(columns) if columns is not None else None
            meta = pf.metadata
            starts = [0]
            for i in range(pf.num_row_groups):
                starts.append(starts[-1] + meta.row_group(i).num_rows)
            cached: tuple[int, Any] | None = None  # the last row group read, reused by next slice
            for start, stop in bounds:
                if wanted == []:
                    yield (start, stop), no_columns(stop - start)
                    continue
                pieces = []
                group = 0
                while group < pf.num_row_groups and starts[group + 1] <= start:
                    group += 1
                while group < pf.num_row_groups and starts[group] < stop:
                    if cached is None or cached[0] != group:
                        cached = (group, _read_row_group(source, pf, group, wanted))
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


def _parquet_file(source: SourceFile, fh: IO[bytes], spec: InputSpec) -> Any:
    try:
        return pq.ParquetFile(fh)
    except (pa.ArrowException, OSError) as exc:
        reason = first_line(exc)
    try:
        fh.seek(0)
        head = fh.read(64)
    except (OSError, ValueError):
        head = b""
    error = wrong_format(source, spec, sniff(head))
    if error is not None:
        raise error
    raise InputError(f"{source.url}: not a readable Parquet file ({reason})")


def _read_row_group(source: SourceFile, pf: Any, group: int, columns: list[str] | None) -> Any:
    try:
        return pf.read_row_group(group, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"{source.url}: row group {group} unreadable ({first_line(exc)})"
        ) from None
