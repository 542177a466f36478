"""Building the result index: which rows of an output's files hold a reusable result.

:func:`scan_output` lists every part under ``parts/`` and every journal entry under
``_journal/``, reads from each only the columns that decide reuse (``request_hash``,
``status``, ``error_kind``, ``attempts``), and keeps one copy per request hash, the best by
:data:`rank <_PAID_KEPT>`: a paying copy (the row that carried the request's tokens,
``attempts > 0``; every journal entry is one) in a part that the next manifest keeps, then any
paying copy, then a shared one. The result is a few flat arrays sorted by hash
(:class:`IndexArrays`), which :class:`~enrich.output.index.ResultIndex` searches.
:func:`read_file` reads a file for the index, whole or in part.
"""

from __future__ import annotations

import io
from array import array
from collections.abc import Container, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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


class IndexArrays(NamedTuple):
    """The best copy of each hash, sorted by hash, and the files they are in."""

    files: list[ResultFile]
    hashes: bytes  # HASH_BYTES per result
    file_of: array[int]
    row_of: array[int]
    kept: bytearray  # 1 where the copy is a paying copy in a kept part


@dataclass(slots=True)
class _Scan:
    """The reusable rows of one file: their hashes (binary), rows and copy ranks."""

    hashes: bytes = b""
    rows: array[int] = field(default_factory=lambda: array("i"))
    ranks: bytearray = field(default_factory=bytearray)


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

    def scan(f: ResultFile) -> _Scan:
        return _scan(read_file(store, f, _SCAN_COLUMNS), f, retry_errors)

    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        scans = list(pool.map(scan, files))
    return IndexArrays(files, *_sorted(scans))


def read_file(store: Store, f: ResultFile, columns: Sequence[str] | None) -> pa.Table:
    """``columns`` of a file (None: ``request_hash`` and every column after it)."""
    data = store.read_bytes(f.key)
    if f.kind == "journal":
        table = ipc.open_file(pa.py_buffer(data)).read_all()
    elif f.fmt == "parquet":
        schema = pq.read_schema(io.BytesIO(data))
        return pq.read_table(io.BytesIO(data), columns=_wanted(schema.names, columns))
    else:
        table = decode(data, f.fmt)
    return table.select(_wanted(table.column_names, columns))


def _wanted(names: Sequence[str], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return [c for c in columns if c in names]
    # The result columns follow request_hash in a part (results.output_table).
    return list(names[names.index("request_hash") :]) if "request_hash" in names else []


def _scan(table: pa.Table, f: ResultFile, retry_errors: bool) -> _Scan:
    """The reusable rows of ``table`` and the rank of each copy."""
    scan = _Scan()
    n = table.num_rows
    if "request_hash" not in table.column_names or n == 0:
        return scan

    def column(name: str, default: object) -> list[object]:
        if name in table.column_names:
            return list(table.column(name).to_pylist())
        return [default] * n

    hashes = column("request_hash", None)
    statuses, kinds = column("status", "ok"), column("error_kind", None)
    attempts = column("attempts", 1)
    verdicts: dict[tuple[object, object], bool] = {}
    picked: list[str] = []
    for i, h in enumerate(hashes):
        if not (isinstance(h, str) and len(h) == 2 * HASH_BYTES):
            continue
        pair = (statuses[i], kinds[i])
        verdict = verdicts.get(pair)
        if verdict is None:
            probe = Result(None, status=str(pair[0]), error_kind=_str_or_none(pair[1]))
            verdict = verdicts[pair] = reusable(probe, retry_errors=retry_errors)
        if not verdict:
            continue
        picked.append(h)
        scan.rows.append(i)
        paid = f.kind == "journal" or (attempts[i] or 0) > 0  # type: ignore[operator]
        scan.ranks.append(_SHARED if not paid else _PAID_KEPT if f.kept else _PAID)
    try:
        scan.hashes = bytes.fromhex("".join(picked))
    except ValueError:
        scan.hashes = b""
    if len(scan.hashes) != HASH_BYTES * len(picked):
        # Not every value is a hash (a foreign file?): keep the rows whose value is one.
        keep = [i for i, h in enumerate(picked) if _is_hash(h)]
        scan.hashes = b"".join(bytes.fromhex(picked[i]) for i in keep)
        scan.rows = array("i", (scan.rows[i] for i in keep))
        scan.ranks = bytearray(scan.ranks[i] for i in keep)
    return scan


_HEX = frozenset("0123456789abcdefABCDEF")


def _is_hash(text: str) -> bool:
    return len(text) == 2 * HASH_BYTES and all(c in _HEX for c in text)


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _sorted(scans: Sequence[_Scan]) -> tuple[bytes, array[int], array[int], bytearray]:
    """The best copy of each hash, sorted by hash: ``(hashes, file_of, row_of, kept)``."""
    files = array("i")
    for number, scan in enumerate(scans):
        files.extend([number] * len(scan.rows))
    rows = array("i")
    for scan in scans:
        rows.extend(scan.rows)
    n = len(rows)
    if n == 0:
        return b"", array("i"), array("i"), bytearray()
    blob = pa.py_buffer(b"".join(s.hashes for s in scans))
    ranks = b"".join(bytes(s.ranks) for s in scans)
    table = pa.table(
        {
            "hash": pa.Array.from_buffers(pa.binary(HASH_BYTES), n, [None, blob]),
            "rank": pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(ranks)]),
            "file": pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(files)]),
            "row": pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(rows)]),
        }
    )
    del files, rows, blob, ranks
    table = table.sort_by([("hash", "ascending"), ("rank", "ascending")])
    keys = table.column("hash").combine_chunks()
    if n > 1:
        first = pc.not_equal(keys.slice(1), keys.slice(0, n - 1))
        table = table.filter(pa.concat_arrays([pa.array([True]), first]))
    table = table.combine_chunks()

    def buffer(name: str, width: int) -> bytes:
        column = table.column(name).chunk(0)
        start = column.offset * width
        data: bytes = column.buffers()[1].to_pybytes()
        return data[start : start + len(column) * width]

    file_of, row_of = array("i"), array("i")
    file_of.frombytes(buffer("file", 4))
    row_of.frombytes(buffer("row", 4))
    only_kept = bytes(1 if rank == _PAID_KEPT else 0 for rank in range(256))
    kept = bytearray(buffer("rank", 1).translate(only_kept))
    return buffer("hash", HASH_BYTES), file_of, row_of, kept
