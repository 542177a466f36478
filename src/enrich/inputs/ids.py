"""Row keys (``input.id_column``): digests, and where the first repeated one is.

A row's id is the text of its id value (the ``row_id`` it gets in the output), so two rows
with one id would be one row of the output twice. Every id is reduced to a 64-bit digest
(polars' hash of its text) while the input is surveyed, and a job keeps one ``UInt64`` column
of them: 8 bytes per row (8 MB per million rows; finding repeats needs about as much again for
a moment). Digests are compared within one process only, so the hash need not be stable
across versions.

Equal digests are a candidate, not a verdict: the caller compares the ids themselves, so a
digest collision (one in about 10^7 for ten million rows) never refuses a job.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pyarrow as pa

__all__ = ["BATCH", "digest", "first_null", "repeats"]

BATCH = 65_536  # ids digested at once while a file is surveyed
_SEED = 0x5EED


def _series(values: pa.Array | pa.ChunkedArray) -> pl.Series:
    series = pl.from_arrow(values)
    assert isinstance(series, pl.Series)
    return series


def digest(values: pa.Array | pa.ChunkedArray) -> pl.Series:
    """One UInt64 digest per value, of its text (nulls have one too; check them first)."""
    series = _series(values)
    if series.dtype != pl.String:
        series = series.cast(pl.String)
    return series.hash(seed=_SEED)


def first_null(values: pa.Array | pa.ChunkedArray) -> int | None:
    """The index of the first null in ``values``, or None when there is none."""
    if values.null_count == 0:
        return None
    return int(_series(values.is_null()).arg_true()[0])


def repeats(digests: pl.Series) -> Iterator[tuple[int, int]]:
    """``(row, earlier row)`` for each row whose digest an earlier row has, in row order."""
    later = (~digests.is_first_distinct()).arg_true()
    for row in later:
        value = digests[row]
        earlier = int((digests == value).arg_true()[0])
        yield int(row), earlier
