"""Building the result index: which rows of an output's files hold a reusable result.

:func:`scan_output` lists every part under ``parts/`` and every journal entry under
``_journal/``, reads from each only the columns that decide reuse (``request_hash``,
``status``, ``error_kind``, ``attempts``), and keeps one copy per request hash, the best
first: a paying copy (the row that carried the request's tokens, ``attempts > 0``; every
journal entry is one) in a part that the next manifest keeps, then any paying copy, then a
shared one. The result is a few flat arrays sorted by hash (:class:`IndexArrays`), which
:class:`~enrich.output.index.ResultIndex` searches. :func:`read_file` reads a file for the
index, whole or in part.

All of it is Arrow compute, with no Python object per row, and the sort goes one column at a
time: over 1,000,000 results the index holds 26 MB and the build peaks about 160 MB above
where it started (``benchmarks/index_1m.py``).
"""

from __future__ import annotations

import io
from array import array
from collections.abc import Container, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from enrich.output.layout import LAYOUT
from enrich.results import OutputFormat, Result, decode, reusable
from enrich.storage import Store

__all__ = ["HASH_BYTES", "IndexArrays", "ResultFile", "read_file", "scan_output"]

# Which copy of a hash the index keeps, best first.
_PAID_KEPT, _PAID, _SHARED = 0, 1, 2
HASH_BYTES = 16
_SCAN_COLUMNS = ("request_hash", "status", "error_kind", "attempts")
# Files read at once while building: one GET each.
_READERS = 8


@dataclass(frozen=True, slots=True)
class ResultFile:
    """A file under the output that holds results: a part or a journal entry."""

    key: str
    kind: Literal["part", "journal"]
    fmt: OutputFormat = "parquet"
    #: A part the next manifest names as it is: its paying copies are paid for already.
    kept: bool = False
    #: The step of a ``steps:`` part whose results these are, by its columns' prefix
    #: (``triage_``); ``""`` for a one-prompt part and a journal entry.
    prefix: str = ""


class IndexArrays(NamedTuple):
    """The best copy of each hash, sorted by hash, and the files they are in."""

    files: list[ResultFile]
    hashes: bytes  # HASH_BYTES per result
    file_of: array[int]
    row_of: array[int]
    kept: bytearray  # 1 where the copy is a paying copy in a kept part


def scan_output(store: Store, *, keep: Container[str], retry_errors: bool) -> IndexArrays:
    """Every reusable result under ``store``; ``keep``: chunk ids whose parts stay."""
    files: list[ResultFile] = []
    for key in store.keys(LAYOUT.parts):
        part = LAYOUT.parse_part(key)
        if part is not None:
            files.append(ResultFile(key, "part", part.fmt, kept=part.chunk_id in keep))
    files += [
        ResultFile(key, "journal")
        for key in store.keys(LAYOUT.journal)
        if LAYOUT.parse_journal_entry(key) is not None
    ]

    def scan(f: ResultFile) -> list[tuple[ResultFile, pa.Table]]:
        data = store.read_bytes(f.key)
        # A part of a steps: job holds one result per step and row: one file per step.
        steps = [f] if f.kind == "journal" else [replace(f, prefix=p) for p in _prefixes(data, f)]
        return [(g, _scan(_table(data, g, _SCAN_COLUMNS), g, retry_errors)) for g in steps]

    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        scanned = [pair for pairs in pool.map(scan, files) for pair in pairs]
    return IndexArrays([f for f, _ in scanned], *_sorted([s for _, s in scanned]))


def read_file(store: Store, f: ResultFile, columns: Sequence[str] | None) -> pa.Table:
    """``columns`` of a file (None: ``request_hash`` and every column after it), one step's
    of a ``steps:`` part, named without its prefix."""
    return _table(store.read_bytes(f.key), f, columns)


def _table(data: bytes, f: ResultFile, columns: Sequence[str] | None) -> pa.Table:
    if f.kind == "journal":
        table = ipc.open_file(pa.py_buffer(data)).read_all()
    elif f.fmt == "parquet":
        schema = pq.read_schema(io.BytesIO(data))
        wanted = _wanted(schema.names, columns, f.prefix)
        table = pq.read_table(io.BytesIO(data), columns=wanted)
        return table.rename_columns([c.removeprefix(f.prefix) for c in wanted])
    else:
        table = decode(data, f.fmt)
    wanted = _wanted(table.column_names, columns, f.prefix)
    return table.select(wanted).rename_columns([c.removeprefix(f.prefix) for c in wanted])


def _wanted(names: Sequence[str], columns: Sequence[str] | None, prefix: str = "") -> list[str]:
    if columns is not None:
        return [prefix + c for c in columns if prefix + c in names]
    # The result columns follow request_hash in a part (results.output_table); a step's
    # start with its prefix (steps.table).
    first = prefix + "request_hash"
    if first not in names:
        return []
    after = names[names.index(first) :]
    return [c for c in after if c.startswith(prefix)] if prefix else list(after)


def _prefixes(data: bytes, f: ResultFile) -> list[str]:
    """The steps of a part, by the prefix of their columns (``""``: a one-prompt part)."""
    if f.fmt == "parquet":
        names = pq.read_schema(io.BytesIO(data)).names
    else:
        names = decode(data, f.fmt).column_names
    after = names[names.index("row_id") + 1 :] if "row_id" in names else names
    return [c.removesuffix("request_hash") for c in after if c.endswith("request_hash")]


def _scan(table: pa.Table, f: ResultFile, retry_errors: bool) -> pa.Table:
    """The reusable rows of ``table``: ``hash`` (hex, fixed width), ``rank``, ``row``.

    Vectorised: no Python object per row. Reuse is decided by :func:`reusable` once per
    distinct ``(status, error_kind)`` of the file.
    """
    n = table.num_rows
    names = table.column_names
    if "request_hash" not in names or n == 0:
        return _SCANNED.empty_table()

    def column(name: str, default: pa.Scalar) -> pa.Array:
        if name in names:
            return table.column(name).combine_chunks().cast(default.type)
        return pa.repeat(default, n)

    hashes = column("request_hash", pa.scalar("", pa.string()))
    outcome = pc.binary_join_element_wise(
        pc.fill_null(column("status", pa.scalar("ok", pa.string())), ""),
        pc.fill_null(column("error_kind", pa.scalar(None, pa.string())), ""),
        "\x1f",
    )
    allowed = [
        o for o in pc.unique(outcome).to_pylist() if _reusable(str(o), retry_errors=retry_errors)
    ]
    keep = pc.and_(
        pc.fill_null(pc.match_substring_regex(hashes, _HEX_HASH), False),
        pc.is_in(outcome, value_set=pa.array(allowed, pa.string())),
    )
    rows = pc.indices_nonzero(keep).cast(pa.int32())
    if f.kind == "journal":
        ranks = pa.repeat(pa.scalar(_PAID, pa.uint8()), len(rows))
    else:
        paid = pc.greater(pc.fill_null(column("attempts", pa.scalar(1, pa.int64())), 0), 0)
        rank = _PAID_KEPT if f.kept else _PAID
        ranks = pc.if_else(pc.take(paid, rows), rank, _SHARED).cast(pa.uint8())
    hex_hashes = pc.take(hashes, rows).cast(pa.binary()).cast(pa.binary(2 * HASH_BYTES))
    binary = bytes.fromhex(_values(hex_hashes, 2 * HASH_BYTES).decode("ascii"))
    keys = pa.Array.from_buffers(pa.binary(HASH_BYTES), len(rows), [None, pa.py_buffer(binary)])
    return pa.table([keys, ranks, rows], schema=_SCANNED)


_HEX_HASH = f"^[0-9a-f]{{{2 * HASH_BYTES}}}$"
_SCANNED = pa.schema([("hash", pa.binary(HASH_BYTES)), ("rank", pa.uint8()), ("row", pa.int32())])


def _reusable(outcome: str, *, retry_errors: bool) -> bool:
    status, _, kind = outcome.partition("\x1f")
    probe = Result(None, status=status, error_kind=kind or None)
    return reusable(probe, retry_errors=retry_errors)


def _sorted(scans: Sequence[pa.Table]) -> tuple[bytes, array[int], array[int], bytearray]:
    """The best copy of each hash, sorted by hash: ``(hashes, file_of, row_of, kept)``.

    One column at a time, so that the peak stays near twice the index's own size.
    """
    table = pa.concat_tables(
        [_SCANNED.empty_table().append_column("file", pa.array([], pa.int32()))]
        + [
            t.append_column("file", pa.repeat(pa.scalar(number, pa.int32()), t.num_rows))
            for number, t in enumerate(scans)
        ]
    )
    n = table.num_rows
    if n == 0:
        return b"", array("i"), array("i"), bytearray()
    order = pc.sort_indices(table, sort_keys=[("hash", "ascending"), ("rank", "ascending")])
    keys = pc.take(table.column("hash"), order).combine_chunks()
    if n > 1:  # the first (best) copy of each hash
        first = pc.not_equal(keys.slice(1), keys.slice(0, n - 1))
        order = pc.filter(order, pa.concat_arrays([pa.array([True]), first]))
    del keys

    hashes = _taken(table, "hash", order, HASH_BYTES)
    file_of, row_of = array("i"), array("i")
    file_of.frombytes(_taken(table, "file", order, 4))
    row_of.frombytes(_taken(table, "row", order, 4))
    only_kept = bytes(1 if rank == _PAID_KEPT else 0 for rank in range(256))
    kept = bytearray(_taken(table, "rank", order, 1).translate(only_kept))
    del table, order
    pa.default_memory_pool().release_unused()  # the sort's scratch, back to the system
    return hashes, file_of, row_of, kept


def _taken(table: pa.Table, name: str, order: pa.Array, width: int) -> bytes:
    """The values of one fixed-width column at ``order``, as bytes."""
    return _values(pc.take(table.column(name), order).combine_chunks(), width)


def _values(column: pa.Array, width: int) -> bytes:
    """The values of a fixed-width array (no nulls), as bytes."""
    start = column.offset * width
    return bytes(memoryview(column.buffers()[1])[start : start + len(column) * width])
