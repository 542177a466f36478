"""The row-level async engine: one chunk in, one committed part out.

An :class:`Engine` holds what every chunk in flight shares: the one completion client, the one
rate controller, and the map of requests in flight (so two rows, even in different chunks,
that render the same request share one call). :meth:`Engine.run_chunk` renders the chunk's
prompts, reuses every result the journal already has, sends the rest concurrently under the
controller, journals results as they arrive and commits the chunk.

Rows whose request failed for good (a 400, say) are committed with ``status="error"``. Rows
whose request still failed transiently after every retry are left uncommitted, with their
chunk: the run reports them as pending and the next run asks only for them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa

from enrich.client import Completion, CompletionClient
from enrich.errors import CompletionError
from enrich.job import Job
from enrich.output.commit import commit_chunk
from enrich.output.journal import ChunkJournal
from enrich.planning import ChunkSpec
from enrich.ratelimit import RateController
from enrich.report import ChunkSummary, add_latency
from enrich.results import Result, encode, output_table
from enrich.retry import is_retryable, retrying
from enrich.tokens import count_prompt_tokens


@dataclass
class Progress:
    """Live counters for progress bars and throughput logs (plain ints: cheap per row)."""

    rows_total: int = 0
    rows_done: int = 0
    rows_failed: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = 0.0


class _Transient(Exception):
    """A request that still failed transiently after every retry."""

    def __init__(self, error: CompletionError, attempts: int) -> None:
        self.error = error
        self.attempts = attempts


class Engine:
    """Runs chunks of one job with one shared client and rate controller."""

    def __init__(self, job: Job, client: CompletionClient, controller: RateController) -> None:
        self.job = job
        self.client = client
        self.controller = controller
        self.progress = Progress(started=time.perf_counter())
        cfg = job.config
        self._params: dict[str, Any] = cfg.params.request_fields()
        self._max_completion = cfg.params.max_completion_tokens
        self._price_in = cfg.pricing.input_per_million / 1_000_000
        self._price_out = cfg.pricing.output_per_million / 1_000_000
        self._retry = cfg.execution.retry
        self._in_flight: dict[str, asyncio.Future[Result]] = {}
        # Results of recent requests, so a row repeating an earlier chunk's request is not
        # sent again; bounded, so memory does not grow with the input.
        self._recent: OrderedDict[str, Result] = OrderedDict()
        self._recent_max = cfg.execution.dedupe_window

    # -- one request -------------------------------------------------------------------------

    def _result(self, c: Completion, attempts: int, latency: float) -> Result:
        return Result(
            completion=c.content,
            finish_reason=c.finish_reason,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            total_tokens=c.total_tokens,
            cached_tokens=c.cached_tokens,
            queue_time=c.queue_time,
            prompt_time=c.prompt_time,
            completion_time=c.completion_time,
            total_time=c.total_time,
            model=c.model,
            request_id=c.request_id,
            attempts=attempts,
            latency_s=latency,
            cost_usd=c.prompt_tokens * self._price_in + c.completion_tokens * self._price_out,
        )

    async def _attempt(self, messages: Sequence[Mapping[str, str]], reserve: int) -> Completion:
        permit = await self.controller.acquire(reserve)
        try:
            completion = await self.client.complete(self.job.config.model, messages, self._params)
        except CompletionError as exc:
            self.controller.release(
                permit, used_tokens=None, headers=exc.headers, status=exc.status, code=exc.code
            )
            raise
        except BaseException:
            self.controller.release(permit, used_tokens=None)
            raise
        self.controller.release(
            permit, used_tokens=completion.total_tokens, headers=completion.headers, status=200
        )
        return completion

    async def _request(self, messages: Sequence[Mapping[str, str]]) -> Result:
        """Send one request with retries; a final failure becomes an error Result.

        The first attempt is made directly; only a retryable failure enters the tenacity loop,
        which then makes the remaining attempts with the same waits (see ``retrying(after=)``).
        """
        reserve = count_prompt_tokens(messages) + self._max_completion
        started = time.perf_counter()
        self.progress.requests += 1
        try:
            completion = await self._attempt(messages, reserve)
            attempts = 1
        except CompletionError as first:
            attempts, outcome = await self._retry_request(messages, reserve, first)
            if isinstance(outcome, CompletionError):
                if is_retryable(outcome):
                    raise _Transient(outcome, attempts) from None
                return Result(
                    completion=None,
                    attempts=attempts,
                    status="error",
                    error=outcome.message,
                    error_kind=outcome.kind,
                    latency_s=time.perf_counter() - started,
                )
            completion = outcome
        self.progress.prompt_tokens += completion.prompt_tokens
        self.progress.completion_tokens += completion.completion_tokens
        return self._result(completion, attempts, time.perf_counter() - started)

    async def _retry_request(
        self, messages: Sequence[Mapping[str, str]], reserve: int, first: CompletionError
    ) -> tuple[int, Completion | CompletionError]:
        """Attempts after a failed first one: ``(attempts made in all, completion or error)``."""
        attempts = 1
        if self._retry.attempts == 1 or not is_retryable(first):
            return attempts, first
        try:
            async for attempt in retrying(
                attempts=self._retry.attempts,
                initial=self._retry.backoff_initial,
                maximum=self._retry.backoff_max,
                after=first,
            ):
                with attempt:
                    attempts += 1
                    self.progress.requests += 1
                    completion = await self._attempt(messages, reserve)
        except CompletionError as exc:
            return attempts, exc
        return attempts, completion

    def _shared_request(
        self, request_hash: str, messages: Sequence[Mapping[str, str]]
    ) -> tuple[asyncio.Future[Result], bool]:
        """The future for ``request_hash``; True if this caller started it (and pays for it)."""
        future = self._in_flight.get(request_hash)
        if future is not None:
            return future, False
        future = asyncio.ensure_future(self._request(messages))
        self._in_flight[request_hash] = future
        future.add_done_callback(lambda _: self._in_flight.pop(request_hash, None))
        return future, True

    # -- one chunk ---------------------------------------------------------------------------

    async def run_chunk(self, chunk: ChunkSpec, table: pa.Table) -> ChunkSummary:
        """Enrich one chunk and commit it; returns what it did (never raises for row errors)."""
        started = time.perf_counter()
        job, cfg = self.job, self.job.config
        summary = ChunkSummary(chunk_id=chunk.chunk_id, label=chunk.label, rows=chunk.rows)
        row_ids, hashes, messages = job.render(chunk, table)
        journal = ChunkJournal(
            job.store,
            chunk,
            cfg.output.format,
            completion_column=cfg.output.completion_column,
            interval_s=cfg.execution.journal_interval_s,
            max_rows=cfg.execution.journal_rows,
        )
        known = await asyncio.to_thread(journal.load)

        owned: set[str] = set(known)
        waits: dict[str, asyncio.Future[Result]] = {}
        results: dict[str, Result] = dict(known)
        for i, h in enumerate(hashes):
            if h in results or h in waits:
                continue
            earlier = self._recent.get(h)
            if earlier is not None:
                results[h] = earlier
                continue
            future, mine = self._shared_request(h, messages[i])
            waits[h] = future
            if mine:
                owned.add(h)
                summary.requests += 1
                # Journal each result as it arrives, from the future's own completion: no
                # waiter task per row.
                future.add_done_callback(partial(_journal_result, journal, h))

        transient: dict[str, _Transient] = {}
        if waits:
            try:
                # ``wait`` never cancels what it waits for: requests shared with other chunks
                # go on if this chunk is cancelled.
                await asyncio.wait(waits.values())
            except BaseException:
                # Cancelled (the run is stopping): stop sending, keep what already arrived
                # (journaled as it came).
                for h in owned & waits.keys():
                    waits[h].cancel()
                await asyncio.shield(journal.flush())
                raise
            for h, future in waits.items():
                try:
                    results[h] = future.result()
                except _Transient as gave_up:
                    transient[h] = gave_up
                except BaseException:
                    await journal.flush()
                    raise
        await journal.flush()
        self._remember(results, owned)

        row_results: list[Result] = []
        seen: set[str] = set()
        for h in hashes:
            if h in transient:
                failure = transient[h]
                summary.pending += 1
                summary.add_error(failure.error.kind, failure.error.message)
                continue
            result = results[h]
            first = h not in seen
            seen.add(h)
            if first and h in owned:
                if h in known:
                    summary.reused += 1  # paid for by an earlier run
                else:
                    summary.attempts += result.attempts
                    if result.latency_s is not None:
                        add_latency(summary.latency, result.latency_s)
            else:
                result = result.shared()  # another row paid for this request
                summary.reused += 1
            row_results.append(result)
            summary.prompt_tokens += result.prompt_tokens
            summary.completion_tokens += result.completion_tokens
            summary.cost_usd += result.cost_usd
            if result.status == "ok":
                summary.ok += 1
            else:
                summary.failed += 1
                summary.add_error(result.error_kind or "error", result.error or "")
        self.progress.rows_done += summary.ok + summary.failed
        self.progress.rows_failed += summary.failed
        summary.elapsed_s = time.perf_counter() - started
        if summary.pending:
            return summary

        out = output_table(
            job.keep(table), row_ids, hashes, row_results, cfg.output.completion_column
        )
        data = await asyncio.to_thread(encode, out, cfg.output.format)
        await asyncio.to_thread(commit_chunk, job.store, chunk, data, cfg.output.format, summary)
        await asyncio.to_thread(journal.discard)
        return summary

    def cancel_all(self) -> None:
        """Cancel every request still in flight (the run is stopping)."""
        for future in list(self._in_flight.values()):
            future.cancel()

    def _remember(self, results: Mapping[str, Result], owned: set[str]) -> None:
        recent = self._recent
        for h in owned:
            result = results.get(h)
            if result is not None and result.status == "ok":
                recent[h] = result
                recent.move_to_end(h)
        while len(recent) > self._recent_max:
            recent.popitem(last=False)


def _journal_result(
    journal: ChunkJournal, request_hash: str, future: asyncio.Future[Result]
) -> None:
    if not future.cancelled() and future.exception() is None:
        journal.add(request_hash, future.result())
