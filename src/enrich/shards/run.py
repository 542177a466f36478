"""A job run as shards: the coordinator's side and a shard's side.

The **coordinator** (:func:`run_sharded`) holds the output's run lease for the whole run. Under
it, it splits the pending chunks into shards (:mod:`enrich.shards.plan`), writes the plan, and
hands it to ``run_shards``: the orchestration layer, which runs each shard as a flow run of its
own on any worker and starts a shard again when its runner died (:func:`runner_gone`). When
every shard has ended it commits the dataset once, from the chunk records, with the same commit
and fence as an unsharded run (:func:`enrich.run.finalize`); the garbage it collects includes
the shard plans and leases.

A **shard** (:func:`run_shard`) reads the plan and refuses to run when the job changed since
(another fingerprint, chunks the plan does not have). It holds a lease of its own, one per
shard, so two runs of one shard never send at once; that lease is guarded by the run lease
(:func:`job_run_gone`): a shard works only while the coordinator that planned it holds the
output, and stops (its requests in flight finish and are journaled) at its next renewal once
that run is gone. It runs its pending chunks through one engine and commits chunk by chunk,
never the dataset, and deletes nothing. A shard run again after a crash finds its committed
chunks committed and the journaled results of the others by request hash: it loses at most
what its journal had not yet written.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Unpack

from enrich.config import JobConfig
from enrich.errors import ConfigError, InputChanged
from enrich.holder import Here, holder_state, look_here
from enrich.inputs import list_sources
from enrich.job import Job
from enrich.lease import LeaseRecord, LeaseRevoked, hold_lease, read_lease
from enrich.output.commit import read_chunk_record
from enrich.output.committed import committed_chunk_ids
from enrich.output.layout import LAYOUT
from enrich.output.provenance import InputRecord
from enrich.planning import ChunkSpec
from enrich.run import EngineOptions, commit_checks_itself, finalize, run_pending
from enrich.shards.ending import ShardEnd, record_end
from enrich.shards.plan import ShardPlan, ShardPlanUnreadable, ShardRef, shard_count, split
from enrich.storage import Store
from enrich.summary import ChunkSummary, JobSummary

__all__ = [
    "RunShards",
    "ShardOutcome",
    "job_run_gone",
    "read_shard_plan",
    "run_shard",
    "run_sharded",
    "runner_gone",
    "shard_job",
    "shards_for",
]


@dataclass(frozen=True, slots=True)
class ShardOutcome:
    """How a shard ended: ``completed`` (every chunk of it committed) or not, why not, and the
    reason of the job that stopped it, if one did (:func:`enrich.shards.ending.stop_of`)."""

    ref: ShardRef
    completed: bool
    message: str = ""
    stopped: str | None = None

    @property
    def budget(self) -> bool:
        """Whether its share of the budget stopped it."""
        return self.stopped == "budget"


RunShards = Callable[[ShardPlan], Awaitable[Sequence[ShardOutcome]]]


def shards_for(job: Job, pending: int) -> int:
    """How many shards a run of ``job`` with ``pending`` chunks splits into (1: no split)."""
    ex = job.config.execution
    return shard_count(pending, ex.parallelism, ex.chunks_in_flight)


def job_run_gone(record: LeaseRecord | None, owner: str, *, now: float, here: Here) -> str | None:
    """Why the run that owns ``owner``'s lease no longer holds the output, or None if it does.

    ``record`` is the run lease as read now (None: there is none).
    """
    if record is None:
        return "the job run it works for released the output"
    if record.owner != owner:
        return f"another run took the output over ({record.describe(now)})"
    state = holder_state(record.holder, record.expires_at, now=now, here=here)
    if state == "expired":
        return "the job run it works for stopped renewing its lease"
    if state == "dead":
        return "the job run it works for is no longer running"
    return None


def runner_gone(store: Store, ref: ShardRef, *, now: float | None = None) -> bool:
    """Whether shard ``ref``'s lease names a runner that stopped (expired, or a process of this
    machine that is gone); that lease is then removed, so the shard's next run starts clean and
    a runner that was only frozen finds it gone at its next renewal. No lease (the shard's run
    has not taken it yet): False."""
    key = LAYOUT.shard_lease(ref.run, ref.number)
    current = store.read_versioned(key)
    record = LeaseRecord.parse(current.data) if current is not None else None
    if current is None or record is None:
        return False
    when = time.time() if now is None else now
    here = look_here(record.pid)
    if holder_state(record.holder, record.expires_at, now=when, here=here) == "live":
        return False
    store.delete_if(key, current.version)
    return True


def shard_job(config: JobConfig, ref: ShardRef, where: str = "job") -> Job:
    """The job shard ``ref`` runs, rebuilt from the input its plan recorded when one listing
    shows that input unchanged (nothing read), surveyed whole when the plan has no record, and
    with the catalogue entries the plan recorded (the coordinator's prices and limits).

    Raises InputChanged when a file was added, removed or rewritten since the split (a stop it
    records, :mod:`enrich.shards.ending`), and LeaseLost when the plan is gone.
    """
    store = Store(config.output.path, config.output.storage_options)
    plan = read_shard_plan(store, ref)
    with _ends_recorded(store, ref):
        return _rebuilt(config, plan, ref, where)


def _rebuilt(config: JobConfig, plan: ShardPlan, ref: ShardRef, where: str) -> Job:
    if plan.inputs is None:
        return Job.prepare(config, where, catalogue=plan.catalogue)
    listed = list_sources(config.input)
    change = plan.inputs.change(listed)
    if change is not None:
        raise InputChanged(
            f"{where}: {change} since {ref.label} was planned; run the job again to split it anew"
        )
    sources = plan.inputs.sources(listed)
    return Job(config, sources, list(plan.inputs.columns), where, catalogue=plan.catalogue)


def read_shard_plan(store: Store, ref: ShardRef) -> ShardPlan:
    """The plan of ``ref``'s run; LeaseRevoked when it is gone (that run committed or was
    taken over)."""
    key = LAYOUT.shard_plan(ref.run)
    found = store.read_versioned(key)
    if found is None:
        raise LeaseRevoked(
            f"{store.url_of(key)}: {ref.label} of run {ref.run} has no plan: that run is over"
        )
    return ShardPlan.from_bytes(found.data, store.url_of(key))


async def run_sharded(job: Job, run_shards: RunShards, *, run: str | None = None) -> JobSummary:
    """Run ``job`` as shards (see the module) and commit it once: the run's figures.

    ``run_shards`` runs every shard of the plan to an end and says how each ended. Raises
    LeaseHeld when another run holds the output, LeaseLost when this run lost it.
    """
    started = time.perf_counter()
    run = run or uuid.uuid4().hex[:12]
    async with hold_lease(job.store, job=job.config.name) as lease:
        pending = await asyncio.to_thread(job.pending)
        outcomes: Sequence[ShardOutcome] = ()
        if pending:
            await asyncio.to_thread(job.write_plan)
            shards = split(pending, shards_for(job, len(pending)))
            inputs = InputRecord.of(job.sources, job.input_columns)
            catalogue = job.catalogue.only(list(job.entries))
            plan = ShardPlan.of(
                run, job.config.name, job.fingerprint, lease.owner, shards, inputs, catalogue
            )
            key = LAYOUT.shard_plan(run)
            await asyncio.to_thread(job.store.write_bytes, key, plan.to_bytes())
            outcomes = await run_shards(plan)
            # Still this run's output? A shard's work is committed only by the run it was for.
            await asyncio.to_thread(lease.confirm)
        summaries = await asyncio.to_thread(_committed_summaries, job.store, pending)
        lease.on_lost = commit_checks_itself
        result = await asyncio.to_thread(
            partial(finalize, fence=lease.confirm), job, summaries, time.perf_counter() - started
        )
    failed = [o for o in outcomes if not o.completed]
    if failed and not result.complete:
        told = "; ".join(f"{o.ref.label}: {o.message or 'did not complete'}" for o in failed)
        result.message = f"{result.message} ({told})"
        if any(o.budget for o in failed):
            result.stopped = "budget"
    return result


def _committed_summaries(store: Store, chunks: Sequence[ChunkSpec]) -> list[ChunkSummary]:
    """The figures of those of ``chunks`` that are committed now, from their records."""
    done = committed_chunk_ids(store)
    return [read_chunk_record(store, c.chunk_id).to_summary() for c in chunks if c.chunk_id in done]


async def run_shard(job: Job, ref: ShardRef, **options: Unpack[EngineOptions]) -> JobSummary:
    """Run shard ``ref`` of ``job`` (see the module): its figures; ``complete`` when every
    chunk of it is committed. The arguments are :func:`enrich.run.run_job`'s. A stop for a
    reason of the job is recorded for the coordinator (:mod:`enrich.shards.ending`).

    Raises ConfigError or InputChanged when the job is not the one the shards were planned for,
    LeaseHeld when another run works on this shard, LeaseRevoked when the job run is gone
    (before it starts or at a renewal of its lease).
    """
    with _ends_recorded(job.store, ref):
        result = await _run_shard(job, ref, **options)
    if result.stopped is not None:  # its share of the budget spent
        end = ShardEnd(result.message, result.stopped)
        await asyncio.to_thread(record_end, job.store, ref, end)
    return result


@contextmanager
def _ends_recorded(store: Store, ref: ShardRef) -> Iterator[None]:
    """Record the stop an error raised in the block is (:meth:`ShardEnd.of`), if it is one."""
    try:
        yield
    except Exception as exc:
        end = ShardEnd.of(exc)
        if end is not None:
            record_end(store, ref, end)
        raise


async def _run_shard(job: Job, ref: ShardRef, **options: Unpack[EngineOptions]) -> JobSummary:
    started = time.perf_counter()
    store, name = job.store, job.config.name
    plan = await asyncio.to_thread(read_shard_plan, store, ref)
    ids = _check_plan(job, plan, ref)

    def gone() -> str | None:
        record = read_lease(store)
        why = job_run_gone(
            record, plan.owner, now=time.time(), here=look_here(record.pid if record else 0)
        )
        return None if why is None else f"{ref.label}: {why}"

    why = await asyncio.to_thread(gone)
    if why is not None:
        raise LeaseRevoked(f"{store.url}: {why}; this run stopped")
    key = LAYOUT.shard_lease(ref.run, ref.number)
    async with hold_lease(store, job=name, key=key, guard=gone) as lease:
        committed = await asyncio.to_thread(committed_chunk_ids, store)
        wanted = set(ids)
        pending = [c for c in job.chunks if c.chunk_id in wanted and c.chunk_id not in committed]
        went = None
        if pending:
            went = await run_pending(
                job,
                pending,
                lease,
                budget_share=plan.budget_shares[ref.number - 1],
                budget_holder=f"{store.url}#{ref.run}-{ref.number}",
                **options,
            )
        done = await asyncio.to_thread(committed_chunk_ids, store)
    result = JobSummary(
        job=f"{name} {ref.label}",
        output=store.url,
        chunks=len(ids),
        rows=sum(c.rows for c in job.chunks if c.chunk_id in wanted),
        elapsed_s=time.perf_counter() - started,
    )
    for summary in went.summaries if went is not None else ():
        result.add(summary)
    result.chunks_committed = sum(1 for i in ids if i in done)
    result.complete = result.chunks_committed == len(ids)
    missing = len(ids) - result.chunks_committed
    result.message = (
        f"{len(ids)} chunks committed; the job run commits the dataset"
        if result.complete
        else f"{missing} of {len(ids)} chunks not committed; rerun to resume"
    )
    if went is not None:
        went.report(job, result)
    return result


def _check_plan(job: Job, plan: ShardPlan, ref: ShardRef) -> tuple[str, ...]:
    """The chunk ids of shard ``ref``, once the plan is known to be this job's."""
    where = f"{job.store.url_of(LAYOUT.shard_plan(ref.run))}"
    try:
        ids = plan.chunk_ids(ref)
    except ShardPlanUnreadable as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if plan.job != job.config.name or plan.fingerprint != job.fingerprint:
        raise ConfigError(
            f"{where}: {ref.label} was planned for another config of job {plan.job!r} "
            "(its prompt, model, pricing or output changed since); run the job again"
        )
    known = {c.chunk_id for c in job.chunks}
    if not known.issuperset(ids):
        raise InputChanged(
            f"{where}: the input changed since {ref.label} was planned; run the job again"
        )
    return ids
