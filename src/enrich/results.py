"""Per-row results and the output schema.

A :class:`Result` is what one request produced (or how it failed). Results are journaled by
request hash while a chunk runs and joined back onto the input rows when the chunk commits.
The output is the kept input columns, then ``row_id`` and ``request_hash``, then the
completion column and the usage columns below, in this order.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from enrich.errors import ConfigError

OutputFormat = Literal["parquet", "jsonl"]


@dataclass(slots=True)
class Result:
    """The outcome of one request. ``status`` is ``ok`` or ``error``.

    A row that shares another row's request (same request hash) gets a copy with zero tokens,
    zero cost and zero attempts: it was not paid for again.
    """

    completion: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    queue_time: float | None = None
    prompt_time: float | None = None
    completion_time: float | None = None
    total_time: float | None = None
    model: str | None = None
    request_id: str | None = None
    attempts: int = 0
    latency_s: float | None = None
    cost_usd: float = 0.0
    status: str = "ok"
    error: str | None = None
    error_kind: str | None = None

    def shared(self) -> Result:
        """This result as seen by a second row with the same request: nothing paid again."""
        return replace(
            self,
            prompt_tokens=0,
            completion_tokens=0,
            total_tokens=0,
            cached_tokens=0,
            attempts=0,
            cost_usd=0.0,
        )


_TYPES: dict[str, pa.DataType] = {
    "completion": pa.string(),
    "finish_reason": pa.string(),
    "prompt_tokens": pa.int64(),
    "completion_tokens": pa.int64(),
    "total_tokens": pa.int64(),
    "cached_tokens": pa.int64(),
    "queue_time": pa.float64(),
    "prompt_time": pa.float64(),
    "completion_time": pa.float64(),
    "total_time": pa.float64(),
    "model": pa.string(),
    "request_id": pa.string(),
    "attempts": pa.int32(),
    "latency_s": pa.float64(),
    "cost_usd": pa.float64(),
    "status": pa.string(),
    "error": pa.string(),
    "error_kind": pa.string(),
}
RESULT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Result))
assert tuple(_TYPES) == RESULT_FIELDS, "Result fields and their Arrow types must agree"
IDENTITY_COLUMNS = ("row_id", "request_hash")


def output_columns(completion_column: str) -> list[str]:
    """The columns the engine adds to every output row, in order."""
    renamed = [completion_column if f == "completion" else f for f in RESULT_FIELDS]
    return [*IDENTITY_COLUMNS, *renamed]


def check_collisions(input_columns: Sequence[str], completion_column: str, where: str) -> None:
    """Refuse inputs whose kept columns would be overwritten by an added column."""
    clash = sorted(set(input_columns) & set(output_columns(completion_column)))
    if clash:
        raise ConfigError(
            f"{where}: input column(s) {', '.join(clash)} clash with output columns; "
            "drop them with input.columns or rename output.completion_column"
        )


def results_table(hashes: Sequence[str], results: Sequence[Result]) -> pa.Table:
    """A journal table: one row per request hash."""
    arrays: dict[str, pa.Array] = {"request_hash": pa.array(hashes, pa.string())}
    for name, typ in _TYPES.items():
        arrays[name] = pa.array([getattr(r, name) for r in results], typ)
    return pa.table(arrays)


def results_from_table(table: pa.Table, completion_column: str = "completion") -> dict[str, Result]:
    """Read ``request_hash -> Result`` back from a journal table or an output part."""
    names = set(table.column_names)
    source = {f: completion_column if f == "completion" else f for f in RESULT_FIELDS}
    columns = {f: table.column(c).to_pylist() for f, c in source.items() if c in names}
    out: dict[str, Result] = {}
    for i, h in enumerate(table.column("request_hash").to_pylist()):
        out[h] = Result(**{f: values[i] for f, values in columns.items()})
    return out


def output_table(
    inputs: pa.Table,
    row_ids: Sequence[str],
    hashes: Sequence[str],
    results: Sequence[Result],
    completion_column: str,
) -> pa.Table:
    """Join results onto their input rows (same order, one result per row)."""
    table = inputs.append_column("row_id", pa.array(row_ids, pa.string()))
    table = table.append_column("request_hash", pa.array(hashes, pa.string()))
    for name, typ in _TYPES.items():
        column = completion_column if name == "completion" else name
        table = table.append_column(column, pa.array([getattr(r, name) for r in results], typ))
    return table


def encode(table: pa.Table, fmt: OutputFormat) -> bytes:
    """Serialise a table as one Parquet file or JSON lines."""
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue()
    lines = (orjson.dumps(row, default=str) for row in table.to_pylist())
    return b"\n".join(lines) + b"\n" if table.num_rows else b""


def decode(data: bytes, fmt: OutputFormat) -> pa.Table:
    """Read back what :func:`encode` wrote."""
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(data))
    rows: list[Mapping[str, Any]] = [orjson.loads(line) for line in data.splitlines() if line]
    return pa.Table.from_pylist(rows)
