"""Parquet input: row counts and columns from the footer, row ranges by row group.

A row range is cut from the row groups it spans; the last row group read is kept for the next
range, so consecutive ranges inside one group read it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from enrich.errors import InputError
from enrich.inputs.base import Bounds, InputReader, Slices, SourceFile, first_line, no_columns
from enrich.inputs.columns import require_columns

__all__ = ["ParquetReader"]


class ParquetReader(InputReader):
    format = "parquet"

    def count_rows(self) -> int:
        with self.open() as fh:
            return int(_parquet_file(self.source, fh).metadata.num_rows)

    def schema_columns(self) -> list[str]:
        with self.open() as fh:
            return list(_parquet_file(self.source, fh).schema_arrow.names)

    def read_ranges(self, bounds: Sequence[Bounds], columns: Sequence[str] | None) -> Slices:
        source = self.source
        with self.open() as fh:
            pf = _parquet_file(source, fh)
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


def _parquet_file(source: SourceFile, fh: IO[bytes]) -> Any:
    try:
        return pq.ParquetFile(fh)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{source.url}: not a readable Parquet file ({first_line(exc)})") from None


def _read_row_group(source: SourceFile, pf: Any, group: int, columns: list[str] | None) -> Any:
    try:
        return pf.read_row_group(group, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"{source.url}: row group {group} unreadable ({first_line(exc)})"
        ) from None
