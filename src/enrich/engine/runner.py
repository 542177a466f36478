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

A request that cannot fit the model's context (:meth:`Job.window <enrich.job.Job.window>`)
is never sent: its rows are committed as ``context_overflow`` error rows.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

import pyarrow as pa

from enrich.completer import Completer
from enrich.engine.fold import add_step, fold_results
from enrich.engine.followups import Round, follow_up
from enrich.engine.progress import RunProgress
from enrich.engine.selection import select_requests
from enrich.engine.sender import INVALID_OUTPUT, GaveUp, RequestSender
from enrich.engine.spending import Spending
from enrich.errors import CompletionError, RunStopped
from enrich.job import Job
from enrich.output.commit import commit_chunk
from enrich.output.index import ResultIndex
from enrich.output.journal import ChunkJournal
from enrich.output.spill import Spill
from enrich.planning import ChunkSpec
from enrich.ratelimit import RateController
from enrich.results import Result, after_repair, after_retry, encode, output_table
from enrich.steps.step import RequestKind, RowFields, Step
from enrich.steps.table import SKIPPED, steps_table
from enrich.summary import ChunkSummary
from enrich.tokens import count_prompt_tokens as _tokens

__all__ = ["Engine", "Enriched"]

#: A step a row skips: no request, no cost (``error`` says why when a step it reads failed).
_SKIPPED = Result(None, status=SKIPPED)


@dataclass(frozen=True, slots=True)
class Enriched:
    """A chunk's rows enriched (:meth:`Engine.enrich_chunk`): the part's table (None: some
    rows are pending), the chunk's figures, and its journal (flushed)."""

    summary: ChunkSummary
    table: pa.Table | None
    journal: ChunkJournal


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
        spending: Spending | None = None,
    ) -> None:
        self.job = job
        #: Every result the output had when the run started (:mod:`enrich.output.index`).
        self.index = index if index is not None else ResultIndex.empty()
        self._spill = Spill(job.store)
        self.retry_errors = retry_errors
        self.completer = completer
        self.controller = controller
        self.progress = RunProgress(started=time.perf_counter())
        #: Checked before each chunk commit (the run's lease, :meth:`enrich.lease.Lease.confirm`).
        self.fence: Callable[[], None] | None = None
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
            spending=spending,
        )
        self._in_flight: dict[str, asyncio.Future[Result]] = {}
        # Results of recent requests, so a row repeating an earlier chunk's request is not
        # sent again; bounded, so memory does not grow with the input.
        self._recent: OrderedDict[str, Result] = OrderedDict()
        self._recent_max = cfg.execution.dedupe_window

    async def run_chunk(self, chunk: ChunkSpec, table: pa.Table) -> ChunkSummary:
        """Enrich one chunk and commit it; returns what it did (never raises for row errors).

        The steps run in order, each over the rows that do not skip it (rendered from the
        input and the earlier steps' answers of the same rows); the chunk commits when every
        step of every row has its result.
        """
        enriched = await self.enrich_chunk(chunk, table)
        if enriched.table is None:
            return enriched.summary
        fmt = self.job.config.output.format
        data = await asyncio.to_thread(encode, enriched.table, fmt)
        await asyncio.to_thread(
            commit_chunk, self.job.store, chunk, data, fmt, enriched.summary, self.fence
        )
        await asyncio.to_thread(enriched.journal.discard)
        return enriched.summary

    async def enrich_chunk(
        self, chunk: ChunkSpec, table: pa.Table, *, row_ids: Sequence[str] | None = None
    ) -> Enriched:
        """Every step of every row of ``table``, journaled but not committed.

        The rows as a part would hold them (``table`` of the result; None while some row
        still failed transiently), with the chunk's figures and its journal, flushed: what
        was paid for is under the output by hash whether or not the chunk is committed (a
        sample run leaves it there for the full run). ``row_ids`` replace the chunk's own
        (rows picked from anywhere in the input). Raises RunStopped as :meth:`run_chunk`.
        """
        started = time.perf_counter()
        job, cfg = self.job, self.job.config
        job.check_rows(chunk, table)  # a short read is never committed
        summary = ChunkSummary(chunk_id=chunk.chunk_id, label=chunk.label, rows=chunk.rows)
        row_ids = list(job.row_ids(chunk, table) if row_ids is None else row_ids)
        journal = ChunkJournal(
            job.store,
            chunk,
            interval_s=cfg.execution.journal_interval_s,
            max_rows=cfg.execution.journal_rows,
            retry=cfg.execution.retry,
            spill=self._spill,
        )
        columns = job.input_values(table)
        n = table.num_rows
        fields: dict[str, list[RowFields]] = {}
        step_hashes: list[list[str | None]] = []
        step_results: list[list[Result]] = []
        for step in job.steps:
            rows: list[int] = []
            per_row: list[Result] = [_SKIPPED] * n
            for row in range(n):
                reason = step.skip_reason(fields, row)
                if reason is None:
                    rows.append(row)
                elif reason != "when":
                    per_row[row] = replace(_SKIPPED, error=reason)
            messages = step.render(columns, fields, rows)
            hashes = [step.hasher(m) for m in messages]
            done = await self._resolve(step, hashes, messages, journal)
            start = ChunkSummary(chunk_id=chunk.chunk_id, label=chunk.label)
            start.requests = done.requests
            folded, tally = fold_results(
                start,
                hashes,
                done.results,
                sent=done.sent,
                known=done.paying,
                transient=done.transient,
                pricing=job.prices_for(step.kind.model),
            )
            add_step(summary, tally, step.name, skipped=n - len(rows))
            if tally.pending:
                break  # the rows of later steps wait for this one: the next run asks again
            row_hashes: list[str | None] = [None] * n
            for i, row in enumerate(rows):
                per_row[row], row_hashes[row] = folded[i], hashes[i]
            step_hashes.append(row_hashes)
            step_results.append(per_row)
            if step.name is not None:
                fields[step.name] = [
                    step.fields_of(r.completion) if r.status == "ok" else None for r in per_row
                ]
        await journal.flush()
        if job.multi_step and not summary.pending:
            totals = [[results[i] for results in step_results] for i in range(n)]
            summary.failed = sum(any(r.status == "error" for r in row) for row in totals)
            summary.ok = n - summary.failed
        self.progress.rows_done += summary.ok + summary.failed
        self.progress.rows_failed += summary.failed
        # Rows reused from an earlier run count too: a rerun of a broken job stops again.
        self._sender.judge(self.progress.rows_failed, self.progress.rows_done)
        summary.elapsed_s = time.perf_counter() - started
        if self._sender.stopped is not None:
            raise self._sender.stopped  # a job error or too many errors: commit nothing
        if summary.pending:
            return Enriched(summary, None, journal)

        if job.multi_step:
            out = steps_table(job.keep(table), row_ids, job.steps, step_hashes, step_results)
        else:
            first = job.steps[0]
            out = output_table(
                job.keep(table),
                row_ids,
                [h or "" for h in step_hashes[0]],
                step_results[0],
                cfg.output.completion_column,
                job.output,
                reasoning=first.keep_reasoning,
            )
        return Enriched(summary, out, journal)

    async def _resolve(
        self,
        step: Step,
        hashes: Sequence[str],
        messages: Sequence[Sequence[Mapping[str, str]]],
        journal: ChunkJournal,
    ) -> Round:
        """The results of one step's requests, with their follow-ups
        (:mod:`enrich.engine.followups`): an answer left empty by reasoning is asked once more
        with the step's retry, one that does not match the output schema once to repair itself.
        """
        ask = partial(self._round, journal=journal)
        first = await ask(step.kind, hashes, messages)
        if step.retry is not None and step.retry_hasher is not None:
            budget = step.retry.max_completion_tokens
            await follow_up(
                ask,
                first,
                hashes,
                messages,
                error_kind="empty_length",
                kind=step.retry,
                hasher=step.retry_hasher,
                build=lambda sent, _: sent,
                join=lambda a, b: after_retry(a, b, budget),
            )
        if step.kind.repairs_invalid:
            # The repair's own verdict is final: an invalid repair counts as an error at once.
            await follow_up(
                ask,
                first,
                hashes,
                messages,
                error_kind=INVALID_OUTPUT,
                kind=replace(step.kind, retries_empty=False, repairs_invalid=False),
                hasher=step.hasher,
                build=step.kind.repair_messages,
                join=after_repair,
            )
        return first

    async def _round(
        self,
        kind: RequestKind,
        hashes: Sequence[str],
        messages: Sequence[Sequence[Mapping[str, str]]],
        journal: ChunkJournal,
    ) -> Round:
        """Find, send and wait for the results of ``hashes`` (one per row, in row order)."""
        found = await asyncio.to_thread(self.index.lookup, hashes)
        # On the event loop, with no await before the sends start: of the chunks that find
        # a result in the index, the first pays for it, and no chunk can send a request
        # another has just found or started.
        paying = self.index.claim(found)
        window = self.job.window(kind)
        selection = select_requests(
            hashes,
            known=found.results,
            recent=self._recent,
            in_flight=self._in_flight,
            fits=None if window is None else lambda row: window.fits(_tokens(messages[row])),
        )
        results: dict[str, Result] = {**found.results, **selection.reuse}
        if window is not None:  # never sent: the request cannot fit the model's context
            for h, row in selection.overflow.items():
                results[h] = window.overflow(_tokens(messages[row]))
        waits = {h: self._in_flight[h] for h in selection.wait}
        for h, row in selection.send.items():
            future = self._start(h, messages[row], kind)
            waits[h] = future
            # Journal each result as it arrives, from the future's own completion: no waiter
            # task per row.
            future.add_done_callback(partial(_journal_result, journal, h))

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
        sent = set(selection.send) | set(selection.overflow)  # decided here, costing nothing
        return Round(results, transient, sent, paying, len(selection.send))

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
        self, request_hash: str, messages: Sequence[Mapping[str, str]], kind: RequestKind
    ) -> asyncio.Future[Result]:
        """Send ``request_hash`` in the background, visible to every chunk while in flight."""
        future = asyncio.ensure_future(self._sender.send(messages, kind))
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
