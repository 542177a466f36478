"""Running a job: chunks in flight over one engine, then the commit.

:func:`drive` keeps ``chunks_in_flight`` chunks running, reading the next chunk's rows only when
a slot frees up, so memory is bounded by the chunks in flight, not by the input. The function
that runs one chunk is passed in: the engine's own :meth:`Engine.run_chunk`, or a Prefect task
wrapping it (the flow layer); both share the engine's client and rate controller because they
run on the same event loop. :func:`finalize` commits the dataset once every chunk is in.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TypedDict, Unpack

import pyarrow as pa

from enrich.allowance import (
    Allowance,
    close_allowance,
    forecast_usd,
    open_allowance,
    spent_usd,
)
from enrich.client import CerebrasCompleter, api_key_from_env
from enrich.completer import Completer
from enrich.engine import Engine, ProgressObserver
from enrich.engine.spending import Spending
from enrich.errors import BudgetReached, RunStopped, StorageError
from enrich.job import Job
from enrich.lease import Lease, LeaseLost, hold_lease
from enrich.output.commit import commit_dataset, read_chunk_record
from enrich.output.committed import committed_chunk_ids, committed_manifest, is_committed
from enrich.output.index import ResultIndex
from enrich.output.provenance import InputRecord
from enrich.output.spill import Spill
from enrich.planning import ChunkSpec
from enrich.ratelimit import RateController
from enrich.ratelimit.grants import Grants
from enrich.ratelimit.share import FleetShare
from enrich.reload import reload_on_sighup
from enrich.summary import ChunkSummary, JobSummary

log = logging.getLogger("enrich.run")

RunChunk = Callable[[ChunkSpec, pa.Table], Awaitable[ChunkSummary]]


@asynccontextmanager
async def open_engine(
    job: Job,
    api_key: str | None = None,
    completer: Completer | None = None,
    *,
    retry_errors: bool = False,
    index: ResultIndex | None = None,
    spending: Spending | None = None,
    grants: Grants | None = None,
) -> AsyncIterator[Engine]:
    """The engine for ``job``: one completer, one rate controller, the output's ``index``,
    the run's budget (``spending``, :mod:`enrich.allowance`), and with ``grants`` the
    process's share of a fleet's per-minute budget (:mod:`enrich.ratelimit.share`).

    Without ``completer``, the engine calls the API through a :class:`CerebrasCompleter` built
    here and closed on exit; a completer passed in (a FakeCompleter in tests) is the caller's.
    """
    cfg = job.config
    ex = cfg.execution
    cerebras: CerebrasCompleter | None = None
    if completer is None:
        completer = cerebras = CerebrasCompleter(
            api_key=api_key or api_key_from_env(cfg.api.api_key_env),
            base_url=cfg.api.endpoint(os.environ),
            timeout=ex.request_timeout,
            max_connections=ex.max_concurrency,
        )
    controller = RateController(
        max_in_flight=ex.max_concurrency,
        requests_per_minute=ex.requests_per_minute,
        tokens_per_minute=ex.tokens_per_minute,
        requests_per_day=ex.requests_per_day,
        tokens_per_day=ex.tokens_per_day,
        adaptive=ex.adaptive_limits,
        share=FleetShare(grants) if grants is not None else None,
    )
    engine = Engine(
        job, completer, controller, retry_errors=retry_errors, index=index, spending=spending
    )
    try:
        with reload_on_sighup(controller, cfg, job.where):  # kill -HUP: re-read the limits
            yield engine
    finally:
        engine.cancel_all()
        if cerebras is not None:
            await cerebras.aclose()


async def drive(
    job: Job, chunks: Sequence[ChunkSpec], run_chunk: RunChunk, chunks_in_flight: int
) -> list[ChunkSummary]:
    """Run ``chunks`` with at most ``chunks_in_flight`` at once; summaries in chunk order.

    The first chunk that raises (a daily quota, a storage failure), or the input's reader
    raising (a row group unreadable), stops the run: no new chunk starts, the chunks in flight
    finish what they have already sent and commit (a request paid for is journaled, not thrown
    away; their next admission fails fast on a spent quota), and the first error is re-raised.
    A budget reached (:class:`~enrich.errors.BudgetReached`) stops the run the same way, but
    when nothing else failed the summaries of the chunks done are returned: the caller says
    why it stopped.
    Every chunk that fails is logged (its label and the error, one line); when several did,
    their count is logged and noted on the error raised. Cancelling ``drive`` itself (Ctrl+C,
    a cancelled flow run) cancels the chunks at once; their journals keep what had arrived.
    """
    tables = job.iter_tables(chunks)
    order = {c.chunk_id: i for i, c in enumerate(chunks)}
    running: dict[asyncio.Future[ChunkSummary], ChunkSpec] = {}
    done: list[ChunkSummary] = []
    failures: list[tuple[ChunkSpec, BaseException]] = []
    failure: BaseException | None = None
    exhausted = False
    try:
        while running or not (exhausted or failure):
            while not (exhausted or failure) and len(running) < chunks_in_flight:
                try:
                    item = await asyncio.to_thread(next, tables, None)
                except Exception as read_error:
                    # The input failed (a row group unreadable, say): like a chunk failure,
                    # no new chunk starts and the running ones finish what they paid for.
                    log.error("reading the input failed: %s", _one_line(read_error))
                    failure = read_error
                    break
                if item is None:
                    exhausted = True
                    break
                running[asyncio.ensure_future(run_chunk(*item))] = item[0]
            if not running:
                break
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                chunk = running.pop(task)
                error = task.exception()
                if error is None:
                    done.append(task.result())
                    continue
                if not isinstance(error, (RunStopped, BudgetReached)):  # said once by the caller
                    log.error("chunk %s failed: %s", chunk.label, _one_line(error))
                    failures.append((chunk, error))
                if failure is None:
                    failure = error
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    if isinstance(failure, BudgetReached) and not failures:
        failure = None  # the budget stopped the run: what is done is reported (see run_job)
    if failure is not None:
        if len(failures) > 1:
            count = f"{len(failures)} of {len(chunks)} chunks failed"
            log.error("%s (each logged above); the first error stops the run", count)
            failure.add_note(f"{count}: {', '.join(c.label for c, _ in failures)}")
        raise failure
    return sorted(done, key=lambda s: order[s.chunk_id])


def _one_line(error: BaseException) -> str:
    """An error as one log line: its type and the first line of its message."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def finalize(
    job: Job,
    summaries: Sequence[ChunkSummary],
    elapsed_s: float,
    *,
    recommit: bool = False,
    fence: Callable[[], None] | None = None,
) -> JobSummary:
    """Commit the dataset if every chunk is in; report what this run did either way.

    The commit itself (manifest, success marker, garbage collection) is
    :func:`enrich.output.commit.commit_dataset`; ``recommit`` makes it again over a committed
    dataset whose chunks this run re-committed (``--retry-errors``). ``fence`` is the run
    lease's check (:meth:`enrich.lease.Lease.confirm`): a run that lost its lease raises
    LeaseLost and commits nothing. The message says how many committed rows are errors.
    """
    cfg = job.config
    result = JobSummary(
        job=cfg.name,
        output=job.store.url,
        chunks=len(job.chunks),
        rows=job.rows,
        elapsed_s=elapsed_s,
    )
    for s in summaries:
        result.add(s)
    done = committed_chunk_ids(job.store)
    missing = [c for c in job.chunks if c.chunk_id not in done]
    result.chunks_committed = len(job.chunks) - len(missing)
    if missing:
        result.message = (
            f"{len(missing)} of {len(job.chunks)} chunks not committed "
            f"({result.pending} rows failed transiently); rerun to resume"
        )
        return result
    if not recommit and _already_committed(job):
        result.complete = True
        result.message = "already committed; nothing to do"
        return result
    manifest = commit_dataset(
        job.store,
        job=cfg.name,
        fingerprint=job.fingerprint,
        fmt=cfg.output.format,
        chunk_ids=[c.chunk_id for c in job.chunks],
        fence=fence,
        output_schema=job.output_description(),
        inputs=InputRecord.of(job.sources, job.input_columns),
    )
    result.complete = True
    result.message = f"committed {manifest.rows} rows in {len(manifest.parts)} parts"
    failed = manifest.totals.rows_failed
    if failed:
        result.message += f"; {failed} rows failed (status error; see the error column)"
    return result


def _already_committed(job: Job) -> bool:
    """Whether the committed dataset is this job's (:func:`enrich.output.committed.is_committed`).

    A manifest that cannot be read is not this job's: the commit is made again. One written by
    a newer version raises (NewerFormat) rather than being overwritten.
    """
    try:
        manifest = committed_manifest(job.store)
    except StorageError:
        return False
    return is_committed(manifest, job.fingerprint, (c.chunk_id for c in job.chunks))


class EngineOptions(TypedDict, total=False):
    """How a run's engine is built and watched; every key is optional (see :func:`run_job`)."""

    api_key: str | None
    chunk_runner: Callable[[Engine], RunChunk] | None
    monitor: Callable[[Engine], Awaitable[None]] | None
    observer: ProgressObserver | None
    completer: Completer | None
    grants: Grants | None


async def run_job(
    job: Job, *, retry_errors: bool = False, **options: Unpack[EngineOptions]
) -> JobSummary:
    """Run a prepared job to the end: pending chunks through one engine, then the commit.

    ``chunk_runner`` turns the engine into the function that runs one chunk (default: the
    engine's own ``run_chunk``; the Prefect flow wraps it in a task). ``monitor`` runs beside
    the chunks (progress logs, artifacts) and is cancelled when they finish. ``observer`` is
    handed the run's live counters (:class:`~enrich.engine.RunProgress`) before the first
    chunk starts, for a display that polls them (the CLI's progress bar, from its thread).
    ``completer`` replaces the Cerebras client (see :func:`open_engine`). A finished job opens
    no client, sends nothing and writes nothing. ``grants`` is where the process gets its share
    of a fleet's per-minute budget (the flow's, over Prefect global concurrency limits).

    With ``retry_errors``, committed chunks with error rows run again: their error rows are
    asked for again (request errors included), their other rows reused.

    Everything that writes runs under the output's lease (:mod:`enrich.lease`): a second run
    of the same output raises LeaseHeld before it sends or writes anything. A run stopped by
    an error of the job or too many errors raises RunStopped and commits nothing. A run whose
    lease is lost (taken over, or not renewed in time) raises LeaseLost: its requests in flight
    finish and are journaled, and it commits no chunk, no manifest and deletes nothing.
    """
    started = time.perf_counter()
    if not retry_errors and _already_committed(job):
        return finalize(job, [], time.perf_counter() - started)
    async with hold_lease(job.store, job=job.config.name) as lease:
        pending = job.pending()
        reopened = await asyncio.to_thread(_with_errors, job, pending) if retry_errors else []
        if reopened:
            pending = [c for c in job.chunks if c in pending or c in reopened]
        went = Went()
        if pending:
            job.write_plan()
            went = await run_pending(job, pending, lease, retry_errors=retry_errors, **options)
        # The commit checks the lease itself (its fence) and must not be cut off half-way.
        lease.on_lost = commit_checks_itself
        # In a thread: a commit of many parts takes a while, and the event loop must go on.
        result = await asyncio.to_thread(
            partial(finalize, recommit=bool(reopened), fence=lease.confirm),
            job,
            went.summaries,
            time.perf_counter() - started,
        )
        went.report(job, result)
        return result


@dataclass
class Went:
    """How running the pending chunks went: their summaries and the run's budget, if any."""

    summaries: list[ChunkSummary] = field(default_factory=list)
    allowance: Allowance | None = None
    forecast: float | None = None

    def report(self, job: Job, result: JobSummary) -> None:
        """Put the budget's figures in ``result``, and say when the budget stopped the run."""
        if self.allowance is None:
            return
        result.forecast_usd = self.forecast
        result.budget_usd = job.config.budget.max_usd
        result.spent_usd = spent_usd(self.allowance.budget)
        reached = self.allowance.spending.reached_error
        if reached is not None and not result.complete:
            done = f"{result.chunks_committed} of {result.chunks} chunks committed"
            result.message = f"{reached} ({done})"
            result.stopped = "budget"


async def run_pending(
    job: Job,
    pending: Sequence[ChunkSpec],
    lease: Lease,
    *,
    retry_errors: bool = False,
    budget_share: float = 1.0,
    budget_holder: str | None = None,
    **options: Unpack[EngineOptions],
) -> Went:
    """Run ``pending`` chunks through one engine under ``lease`` (see :func:`run_job` for the
    arguments); commits each chunk, not the dataset. ``budget_share`` and ``budget_holder``
    are a shard's (:func:`enrich.allowance.open_allowance`)."""
    went = Went()
    chunk_runner, monitor = options.get("chunk_runner"), options.get("monitor")
    observer = options.get("observer")
    index = await asyncio.to_thread(open_index, job, pending, retry_errors)
    went.allowance = await asyncio.to_thread(
        partial(open_allowance, share=budget_share, holder=budget_holder), job
    )
    try:
        if went.allowance is not None:
            went.forecast = await asyncio.to_thread(forecast_usd, job, list(pending))
        async with open_engine(
            job,
            options.get("api_key"),
            options.get("completer"),
            retry_errors=retry_errors,
            index=index,
            spending=None if went.allowance is None else went.allowance.spending,
            grants=options.get("grants"),
        ) as engine:
            engine.progress.rows_total = sum(c.rows for c in pending)
            if observer is not None:
                observer(engine.progress)
            run_chunk = chunk_runner(engine) if chunk_runner else engine.run_chunk
            watcher = asyncio.ensure_future(monitor(engine)) if monitor else None
            # Losing the lease stops the engine rather than cancelling the run, so the
            # requests already paid for finish and are journaled.
            lease.on_lost = engine.stop
            engine.fence = lease.confirm
            try:
                went.summaries = await drive(
                    job, pending, run_chunk, job.config.execution.chunks_in_flight
                )
            finally:
                if watcher is not None:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
    finally:
        await asyncio.to_thread(close_allowance, went.allowance)
    return went


def commit_checks_itself(lost: LeaseLost) -> None:
    """The lease was lost during the commit: its fence raises it before anything is written."""


def open_index(job: Job, pending: Sequence[ChunkSpec], retry_errors: bool) -> ResultIndex:
    """Every result under the job's output, after uploading what storage refused last time.

    The parts of committed chunks that this run does not run again are kept by the manifest
    it will write: a result paid for there is not paid for again by a pending chunk.
    """
    uploaded = Spill(job.store).upload()
    if uploaded:
        log.info("uploaded %d journal entries kept locally by an earlier run", uploaded)
    running = {c.chunk_id for c in pending}
    return ResultIndex.build(
        job.store,
        completion_column=job.config.output.completion_column,
        keep={c.chunk_id for c in job.chunks} - running,
        retry_errors=retry_errors,
    )


def _with_errors(job: Job, pending: Sequence[ChunkSpec]) -> list[ChunkSpec]:
    """Committed chunks of ``job`` (not in ``pending``) whose record counts error rows."""
    return [
        c
        for c in job.chunks
        if c not in pending and read_chunk_record(job.store, c.chunk_id).failed > 0
    ]
