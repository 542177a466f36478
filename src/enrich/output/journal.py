"""The journal: results of a running chunk, flushed to storage so a crash loses little.

Journal entries are keyed by request hash and kept per *slot* (a slice of a source, whatever
the prompt), so a resumed chunk, or the same slice under an edited prompt, reuses every result
whose request it asks again; a part written without its record (a crash between the two) is
read back the same way. Entries are Arrow IPC files, each written whole.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Callable

import pyarrow as pa
import pyarrow.ipc as ipc

from enrich.output.layout import LAYOUT
from enrich.planning import ChunkSpec
from enrich.results import (
    OutputFormat,
    Result,
    decode,
    results_from_table,
    results_table,
    reusable,
)
from enrich.storage import Store


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
        retry_errors: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._chunk = chunk
        self._fmt = fmt
        self._completion_column = completion_column
        self._interval_s = interval_s
        self._max_rows = max_rows
        self._clock = clock
        self._retry_errors = retry_errors
        self._hashes: list[str] = []
        self._results: list[Result] = []
        self._last_flush = clock()
        self._flushing: asyncio.Future[None] | None = None
        self._flushing_batch: tuple[list[str], list[Result]] = ([], [])
        self._written: list[str] = []
        self.flushes = 0

    @property
    def prefix(self) -> str:
        return LAYOUT.slot_journal(self._chunk.slot_id)

    def load(self) -> dict[str, Result]:
        """Every reusable result known for this slot: journal entries and earlier parts.

        Error results are skipped (asked again) unless they are the request's own
        (:func:`~enrich.results.reusable`), and with ``retry_errors`` those are skipped too.
        """
        known: dict[str, Result] = {}
        for key in self._store.keys(LAYOUT.slot_parts(self._chunk.slot_id)):
            part = LAYOUT.parse_part(key)
            if part is None:
                continue
            table = decode(self._store.read_bytes(key), part.fmt)
            if "request_hash" in table.column_names:
                known.update(self._reusable(results_from_table(table, self._completion_column)))
        for key in self._store.keys(self.prefix):
            table = ipc.open_file(pa.py_buffer(self._store.read_bytes(key))).read_all()
            known.update(self._reusable(results_from_table(table)))
        return known

    def _reusable(self, results: dict[str, Result]) -> dict[str, Result]:
        retry = self._retry_errors
        return {h: r for h, r in results.items() if reusable(r, retry_errors=retry)}

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
        chunk = self._chunk
        key = LAYOUT.journal_entry(chunk.slot_id, chunk.chunk_id, uuid.uuid4().hex[:12])
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
