"""Reading what a job wrote, for assertions: one column of the output, keyed by row id."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def by_row(table: pa.Table, column: str) -> dict[str, Any]:
    """``{row_id: value}`` of ``column`` in an output table (row ids are unique in an output)."""
    ids = table.column("row_id").to_pylist()
    values = dict(zip(ids, table.column(column).to_pylist(), strict=True))
    assert len(values) == len(ids), "a row id appears twice in the output"
    return values
