"""The engine's async shell: one chunk in, one committed part out.

An :class:`Engine` holds what every chunk in flight shares: the one request sender (over the
one completer and rate controller), the output's result index (every result the output had
when the run started, whatever chunk or chunking paid for it; the first chunk of the run to
take one carries its cost), the map of requests in flight (so two rows, even in different
chunks, that render the same request share one call) and a window of recent results.
:meth:`Engine.run_chunk` renders the chunk's prompts, finds what the index has, asks
:func:`~enrich.engine.selection.select_requests` what to send, sends it concurrently, journals
results as they arrive, folds them onto the rows with
:func:`~enrich.engine.fold.fold_results` and commits the chunk. The decisions are those two
pure functions; this module only awaits, journals and commits.

Rows whose request failed for good (a 400, say) are committed with ``status="error"``. Rows
whose request still failed transiently after every retry are left uncommitted, with their
chunk: the run reports them as pending and the next run asks only for them. Once the sender
has stopped the run (:class:`~enrich.errors.RunStopped`: an error of the job, too many
errors), no chunk commits: each raises it after its requests in flight are journaled.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import partial

import pyarrow as pa

from enrich.completer import Completer
from enrich.engine.fold import fold_results
from enrich.engine.progress import RunProgress
from enrich.engine.selection import select_requests
from enrich.engine.sender import GaveUp, RequestSender
from enrich.errors import CompletionError, RunStopped
from enrich.job import Job
from enrich.output.commit import commit_chunk
from enrich.output.index import ResultIndex
from enrich.output.journal import ChunkJournal
from enrich.output.spill import Spill
from enrich.planning import ChunkSpec
from enrich.ratelimit import RateController
from enrich.results import Result, encode, output_table
from enrich.summary import ChunkSummary

__all__ = ["Engine"]


class Engine:
    """Runs chunks of one job with one shared completer and rate controller."""

    def __init__(
        self,
        job: Job,
        completer: Completer,
        controller: RateController,
        *,
        retry_errors: bool = False,
        index: ResultIndex | None = None,
    ) -> None:
        self.job = job
        #: Every result the output had when the run started (:mod:`enrich.output.index`).
        self.index = index if index is not None else ResultIndex.empty()
        self._spill = Spill(job.store)
        self.retry_errors = retry_errors
        self.completer = completer
        self.controller = controller
        self.progress = RunProgress(started=time.perf_counter())
        cfg = job.config
        self._sender = RequestSender(
            completer,
            controller,
            model=cfg.model,
            params=cfg.params.request_fields(),
            max_completion_tokens=cfg.params.max_completion_tokens,
            retry=cfg.execution.retry,
            progress=self.progress,
            api_key_env=cfg.api.api_key_env,
            max_error_share=cfg.execution.max_error_share,
            output=job.output,
        )
        self._in_flight: dict[str, asyncio.Future[Result]] = {}
        # Results of recent requests, so a row repeating an earlier chunk's request is not
        # sent again; bounded, so memory does not grow with the input.
        self._recent: OrderedDict[str, Result] = OrderedDict()
        self._recent_max = cfg.execution.dedupe_window

    async def run_chunk(self, chunk: ChunkSpec, table: pa.Table) -> ChunkSummary:
        """Enrich one chunk and commit it; returns what it did (never raises for row errors)."""
        started = time.perf_counter()
        job, cfg = self.job, self.job.config
        job.check_rows(chunk, table)  # a short read is never committed
        summary = ChunkSummary(chunk_id=chunk.chunk_id, label=chunk.label, rows=chunk.rows)
        row_ids, hashes, messages = job.render(chunk, table)
        journal = ChunkJournal(
            job.store,
            chunk,
            interval_s=cfg.execution.journal_interval_s,
            max_rows=cfg.execution.journal_rows,
            retry=cfg.execution.retry,
            spill=self._spill,
        )
        found = await asyncio.to_thread(self.index.lookup, hashes)
        # On the event loop, with no await before the sends start: of the chunks that find
        # a result in the index, the first pays for it, and no chunk can send a request
        # another has just found or started.
        paying = self.index.claim(found)
        selection = select_requests(
            hashes, known=found.results, recent=self._recent, in_flight=self._in_flight
        )
        results: dict[str, Result] = {**found.results, **selection.reuse}
        waits = {h: self._in_flight[h] for h in selection.wait}
        for h, row in selection.send.items():
            future = self._start(h, messages[row])
            waits[h] = future
            # Journal each result as it arrives, from the future's own completion: no waiter
            # task per row.
            future.add_done_callback(partial(_journal_result, journal, h))
        summary.requests = len(selection.send)

        transient: dict[str, CompletionError] = {}
        if waits:
            try:
                # ``wait`` never cancels what it waits for: requests shared with other chunks
                # go on if this chunk is cancelled.
                await asyncio.wait(waits.values())
            except BaseException:
                # Cancelled (the run is stopping): stop sending, keep what already arrived
                # (journaled as it came).
                for h in selection.send:
                    waits[h].cancel()
                await asyncio.shield(journal.flush())
                raise
            for h, future in waits.items():
                try:
                    results[h] = future.result()
                except GaveUp as gave_up:
                    transient[h] = gave_up.error
                except BaseException:
                    await journal.flush()
                    raise
        await journal.flush()

        row_results, summary = fold_results(
            summary,
            hashes,
            results,
            sent=selection.send,
            known=paying,
            transient=transient,
            pricing=self.job.config.pricing,
        )
        self.progress.rows_done += summary.ok + summary.failed
        self.progress.rows_failed += summary.failed
        # Rows reused from an earlier run count too: a rerun of a broken job stops again.
        self._sender.judge(self.progress.rows_failed, self.progress.rows_done)
        summary.elapsed_s = time.perf_counter() - started
        if self._sender.stopped is not None:
            raise self._sender.stopped  # a job error or too many errors: commit nothing
        if summary.pending:
            return summary

        out = output_table(
            job.keep(table), row_ids, hashes, row_results, cfg.output.completion_column, job.output
        )
        data = await asyncio.to_thread(encode, out, cfg.output.format)
        await asyncio.to_thread(commit_chunk, job.store, chunk, data, cfg.output.format, summary)
        await asyncio.to_thread(journal.discard)
        return summary

    @property
    def stopped(self) -> RunStopped | None:
        """Why the run stopped, once it has (see :meth:`stop`)."""
        return self._sender.stopped

    def stop(self, error: RunStopped) -> None:
        """Stop the run: nothing more is sent, requests in flight finish and are journaled,
        and every chunk raises ``error`` instead of committing (the first reason stays)."""
        self._sender.stopped = self._sender.stopped or error

    def cancel_all(self) -> None:
        """Cancel every request still in flight (the run is stopping)."""
        for future in list(self._in_flight.values()):
            future.cancel()

    def _start(
        self, request_hash: str, messages: Sequence[Mapping[str, str]]
    ) -> asyncio.Future[Result]:
        """Send ``request_hash`` in the background, visible to every chunk while in flight."""
        future = asyncio.ensure_future(self._sender.send(messages))
        self._in_flight[request_hash] = future
        future.add_done_callback(partial(self._landed, request_hash))
        return future

    def _landed(self, request_hash: str, future: asyncio.Future[Result]) -> None:
        # One step from "in flight" to "recent": no chunk can look between the two and find
        # the request in neither (and pay for it again).
        self._in_flight.pop(request_hash, None)
        if not future.cancelled() and future.exception() is None:
            self._remember(request_hash, future.result())

    def _remember(self, request_hash: str, result: Result) -> None:
        """Keep a paid ``ok`` result in the recent window, dropping the oldest beyond its size."""
        if result.status != "ok":
            return
        recent = self._recent
        recent[request_hash] = result
        recent.move_to_end(request_hash)
        while len(recent) > self._recent_max:
            recent.popitem(last=False)


def _journal_result(
    journal: ChunkJournal, request_hash: str, future: asyncio.Future[Result]
) -> None:
    if not future.cancelled() and future.exception() is None:
        journal.add(request_hash, future.result())
