"""Checkpoints under the output location: the journal, chunk commits, manifest and marker.

Layout under the output URL::

    parts/<slot>/<chunk_id>.<ext>     one data file per committed chunk
    _chunks/<chunk_id>.json           the chunk's commit record (written after its part)
    _journal/<slot>/<chunk_id>-<n>    results journaled while a chunk runs
    _plan.json                        what the current job plans to commit
    _lease.json                       held by the run writing here (see enrich.lease)
    _manifest.json                    the committed dataset: the only list readers trust
    _SUCCESS                          written last

Every file is written whole (a local rename, one object PUT), so a crash at any instant leaves
each file either complete or absent. A chunk is committed when its record exists; the record is
written after the part, so a record always names a whole file. Journal entries are keyed by
request hash and kept per *slot* (a slice of a source, whatever the prompt), so a resumed
chunk, or the same slice under an edited prompt, reuses every result whose request it asks
again; a part written without its record (a crash between the two) is read back the same way.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from enrich.planning import ChunkSpec
from enrich.report import ChunkSummary
from enrich.results import OutputFormat, Result, decode, results_from_table, results_table
from enrich.storage import Store

PARTS = "parts"
CHUNKS = "_chunks"
JOURNAL = "_journal"
PLAN = "_plan.json"
MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"

EXTENSIONS: dict[str, str] = {"parquet": "parquet", "jsonl": "jsonl"}


def part_key(chunk: ChunkSpec, fmt: OutputFormat) -> str:
    return f"{PARTS}/{chunk.slot_id}/{chunk.chunk_id}.{EXTENSIONS[fmt]}"


def record_key(chunk_id: str) -> str:
    return f"{CHUNKS}/{chunk_id}.json"


def committed_chunk_ids(store: Store) -> set[str]:
    """Ids of every chunk with a commit record (one listing)."""
    return {k.rsplit("/", 1)[-1].removesuffix(".json") for k in store.keys(CHUNKS)}


def read_record(store: Store, chunk_id: str) -> ChunkSummary:
    return ChunkSummary.from_dict(orjson.loads(store.read_bytes(record_key(chunk_id))))


def commit_chunk(
    store: Store, chunk: ChunkSpec, data: bytes, fmt: OutputFormat, summary: ChunkSummary
) -> None:
    """Write the chunk's part, then its record. Either both are visible or the chunk is not."""
    key = part_key(chunk, fmt)
    store.write_bytes(key, data)
    summary.part = key
    summary.committed = True
    store.write_bytes(record_key(chunk.chunk_id), orjson.dumps(summary.to_dict()))


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


class ChunkJournal:
    """Results of one chunk, flushed to storage every ``interval_s`` or ``max_rows`` results.

    :meth:`add` is called once per finished request; it only appends to a buffer and, when a
    flush is due, starts one in a worker thread so the event loop never waits on storage. A
    crash loses what is not yet written: the buffer and the batch being written, about one
    flush window. A failed background write is retried with the next batch.
    """

    def __init__(
        self,
        store: Store,
        chunk: ChunkSpec,
        fmt: OutputFormat,
        *,
        completion_column: str,
        interval_s: float,
        max_rows: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._chunk = chunk
        self._fmt = fmt
        self._completion_column = completion_column
        self._interval_s = interval_s
        self._max_rows = max_rows
        self._clock = clock
        self._hashes: list[str] = []
        self._results: list[Result] = []
        self._last_flush = clock()
        self._flushing: asyncio.Future[None] | None = None
        self._flushing_batch: tuple[list[str], list[Result]] = ([], [])
        self._written: list[str] = []
        self.flushes = 0

    @property
    def prefix(self) -> str:
        return f"{JOURNAL}/{self._chunk.slot_id}"

    def load(self) -> dict[str, Result]:
        """Every result known for this slot: journal entries and parts of earlier prompts."""
        known: dict[str, Result] = {}
        for key in self._store.keys(PARTS + "/" + self._chunk.slot_id):
            fmt: OutputFormat = "jsonl" if key.endswith(".jsonl") else "parquet"
            table = decode(self._store.read_bytes(key), fmt)
            if "request_hash" in table.column_names:
                known.update(results_from_table(table, self._completion_column))
        for key in self._store.keys(self.prefix):
            table = ipc.open_file(pa.py_buffer(self._store.read_bytes(key))).read_all()
            known.update(results_from_table(table))
        return known

    def add(self, request_hash: str, result: Result) -> None:
        self._hashes.append(request_hash)
        self._results.append(result)
        due = len(self._hashes) >= self._max_rows or (
            self._clock() - self._last_flush >= self._interval_s
        )
        if due and (self._flushing is None or self._flushing.done()):
            # Take the batch here, on the event loop; the thread only writes it, so no buffer
            # is touched from two threads.
            batch = self._take()
            self._flushing = asyncio.ensure_future(asyncio.to_thread(self._write, *batch))
            self._flushing_batch = batch

    def _take(self) -> tuple[list[str], list[Result]]:
        hashes, results = self._hashes, self._results
        previous = self._flushing
        if previous is not None and previous.done() and not previous.cancelled():
            if previous.exception() is not None:
                # The last write failed (a storage hiccup): its rows go out with this batch.
                hashes = self._flushing_batch[0] + hashes
                results = self._flushing_batch[1] + results
            self._flushing = None
        self._hashes, self._results = [], []
        self._last_flush = self._clock()
        return hashes, results

    def _write(self, hashes: list[str], results: list[Result]) -> None:
        if not hashes:
            return
        key = f"{self.prefix}/{self._chunk.chunk_id}-{uuid.uuid4().hex[:12]}.arrow"
        self._store.write_bytes(key, _ipc_bytes(results_table(hashes, results)))
        self._written.append(key)
        self.flushes += 1

    async def flush(self) -> None:
        """Wait for a flush under way, then write whatever is still buffered (or raise)."""
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await asyncio.to_thread(self._write, *self._take())

    def discard(self) -> None:
        """Drop this chunk's journal files once its part is committed."""
        self._store.delete(self._written)


def write_json(store: Store, key: str, value: Any) -> None:
    store.write_bytes(key, orjson.dumps(value, option=orjson.OPT_INDENT_2))


def read_json(store: Store, key: str) -> Any:
    return orjson.loads(store.read_bytes(key))


def write_manifest(
    store: Store,
    *,
    job: str,
    fingerprint: str,
    fmt: OutputFormat,
    records: Iterable[ChunkSummary],
    totals: dict[str, Any],
) -> dict[str, Any]:
    """Write the manifest, then the success marker. Returns the manifest."""
    parts = [{"path": r.part, "chunk_id": r.chunk_id, "rows": r.rows} for r in records]
    manifest = {
        "job": job,
        "fingerprint": fingerprint,
        "format": fmt,
        "committed_at": time.time(),
        "rows": sum(p["rows"] for p in parts),  # type: ignore[misc]
        "parts": parts,
        "totals": totals,
    }
    write_json(store, MANIFEST, manifest)
    store.write_bytes(SUCCESS, b"")
    return manifest


def collect_garbage(store: Store, manifest: dict[str, Any]) -> int:
    """Delete journals, and parts and records the manifest no longer names."""
    keep_parts = {p["path"] for p in manifest["parts"]}
    keep_records = {record_key(p["chunk_id"]) for p in manifest["parts"]}
    stale = [k for k in store.keys(PARTS) if k not in keep_parts]
    stale += [k for k in store.keys(CHUNKS) if k not in keep_records]
    stale += store.keys(JOURNAL)
    store.delete(stale)
    return len(stale)
