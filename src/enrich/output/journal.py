"""The journal: results of a running chunk, flushed to storage so a crash loses little.

Entries are Arrow IPC files (``_journal/<chunk_id>-<nonce>.arrow``), each written whole, one
row per request hash. They are read back output-wide, by hash, by
:class:`~enrich.output.index.ResultIndex`: any chunk of a later run, under any chunking, finds
them. A paid result is never dropped on a storage error:

* every write is retried with jittered exponential backoff (the job's ``execution.retry``);
* a background write that still fails keeps its results for the next write;
* what :meth:`ChunkJournal.flush` still cannot write when the chunk ends (or the run stops)
  goes to local disk (:class:`~enrich.output.spill.Spill`), and the next run uploads it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections.abc import Callable

import pyarrow as pa
import pyarrow.ipc as ipc
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from enrich.config.schema import RetrySpec
from enrich.errors import StorageError
from enrich.output.layout import LAYOUT
from enrich.output.spill import Spill
from enrich.planning import ChunkSpec
from enrich.results import Result, results_table
from enrich.storage import Store

log = logging.getLogger("enrich.journal")

Batch = tuple[list[str], list[Result]]


def ipc_bytes(table: pa.Table) -> bytes:
    """``table`` as one Arrow IPC file."""
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


class ChunkJournal:
    """Results of one chunk, flushed to storage every ``interval_s`` or ``max_rows`` results.

    :meth:`add` is called once per finished request; it only appends to a buffer and, when a
    flush is due, starts one in the background so the event loop never waits on storage. A
    crash loses what is not yet written: the buffer and the batch being written, about one
    flush window.
    """

    def __init__(
        self,
        store: Store,
        chunk: ChunkSpec,
        *,
        interval_s: float,
        max_rows: int,
        retry: RetrySpec,
        spill: Spill,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._chunk = chunk
        self._interval_s = interval_s
        self._max_rows = max_rows
        self._retry = retry
        self._spill = spill
        self._clock = clock
        self._hashes: list[str] = []
        self._results: list[Result] = []
        self._last_flush = clock()
        self._flushing: asyncio.Future[None] | None = None
        self._written: list[str] = []
        self.flushes = 0
        self.spilled = 0

    def add(self, request_hash: str, result: Result) -> None:
        self._hashes.append(request_hash)
        self._results.append(result)
        due = len(self._hashes) >= self._max_rows or (
            self._clock() - self._last_flush >= self._interval_s
        )
        if due and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.ensure_future(self._write_in_background(self._take()))

    def _take(self) -> Batch:
        """The buffered results, leaving the buffer empty (on the event loop only)."""
        batch = (self._hashes, self._results)
        self._hashes, self._results = [], []
        self._last_flush = self._clock()
        return batch

    def _put_back(self, batch: Batch) -> None:
        """Return an unwritten batch to the front of the buffer: the next write carries it."""
        self._hashes = batch[0] + self._hashes
        self._results = batch[1] + self._results

    async def _write_in_background(self, batch: Batch) -> None:
        try:
            await self._write(batch)
        except Exception as exc:  # whatever failed, these results were paid for
            log.warning("journal write of %s failed, kept for the next: %s", self._label, exc)
            self._put_back(batch)

    async def _write(self, batch: Batch) -> None:
        """Write ``batch`` as one entry, retrying storage errors with backoff (or raise)."""
        hashes, results = batch
        if not hashes:
            return
        nonce = uuid.uuid4().hex[:12]
        key = LAYOUT.journal_entry(self._chunk.chunk_id, nonce)
        data = await asyncio.to_thread(ipc_bytes, results_table(hashes, results))
        spec = self._retry
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(StorageError),
            stop=stop_after_attempt(spec.attempts),
            wait=wait_exponential_jitter(initial=spec.backoff_initial, max=spec.backoff_max),
            reraise=True,
        ):
            with attempt:
                await asyncio.to_thread(self._store.write_bytes, key, data)
        self._written.append(key)
        self.flushes += 1

    async def flush(self) -> None:
        """Wait for a write under way, then write whatever is still buffered.

        Never loses a result to a storage error: what cannot be written after every retry is
        spilled to local disk (raises only if that fails too).
        """
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        batch = self._take()
        try:
            await self._write(batch)
        except Exception as exc:  # storage down past every retry: keep them locally
            hashes, results = batch
            data = ipc_bytes(results_table(hashes, results))
            path = await asyncio.to_thread(
                self._spill.save, self._chunk.chunk_id, uuid.uuid4().hex[:12], data
            )
            self.spilled += len(hashes)
            log.warning(
                "%s: storage is down (%s); %d paid results kept in %s for the next run",
                self._label,
                exc,
                len(hashes),
                path,
            )

    @property
    def _label(self) -> str:
        return self._chunk.label

    def discard(self) -> None:
        """Drop this chunk's journal entries (and spilled ones) once its part is committed."""
        self._store.delete(self._written)
        self._spill.drop(self._chunk.chunk_id)
