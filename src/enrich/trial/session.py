"""Running one job on a sample: every step of the sampled rows, journaled, nothing committed.

The results go where the job's full run looks for them: the journal under the job's own
output (``_journal/sample-<digest>-<nonce>.arrow``), keyed by request hash, so ``enrich run``
of the same job finds them in its result index and sends none of the sampled rows again; its
commit then collects the entries as garbage, as it does every journal. Nothing else is
written but the plan (as a run writes it, so the output is this job's) and, while the sample
runs, the output's lease: a sample never runs beside a run of the same output.

Results the output already has (an earlier sample, a committed part) are reused, not paid
again, and the sample shows them as they were paid for. The run's budget (``budget.*``)
applies to the sample as to a run.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import pyarrow as pa

from enrich.allowance import close_allowance, open_allowance
from enrich.completer import Completer
from enrich.errors import EnrichError
from enrich.job import Job
from enrich.lease import hold_lease
from enrich.planning import ChunkSpec
from enrich.run import open_engine, open_index
from enrich.summary import ChunkSummary
from enrich.trial.sample import Sample

__all__ = ["SampleIncomplete", "Trial", "run_trial", "sample_chunk"]


class SampleIncomplete(EnrichError):
    """Some sampled rows still failed transiently after every retry; the rest is kept."""


@dataclass(frozen=True, slots=True)
class Trial:
    """One variant's run on the sample: its rows as a part would hold them, its figures."""

    label: str
    job: Job
    table: pa.Table
    summary: ChunkSummary
    elapsed_s: float


def sample_chunk(job: Job, sample: Sample) -> ChunkSpec:
    """The sample as one chunk of ``job``: its id names the job's fingerprint and the rows,
    so its journal entries never pass for a planned chunk's."""
    digest = hashlib.sha256(job.fingerprint.encode())
    for row_id in sample.row_ids:
        digest.update(row_id.encode() + b"\0")
    chunk_id = f"sample-{digest.hexdigest()[:24]}"
    return ChunkSpec(chunk_id, "sample", 0, 0, sample.rows)


async def run_trial(
    job: Job,
    sample: Sample,
    *,
    label: str = "base",
    api_key: str | None = None,
    completer: Completer | None = None,
) -> Trial:
    """Run ``job`` on ``sample`` under the output's lease; raises LeaseHeld when a run holds
    it, RunStopped for an error of the job, BudgetReached, and SampleIncomplete when rows
    are left pending (rerun: only they are asked again)."""
    started = time.perf_counter()
    chunk = sample_chunk(job, sample)
    table = sample.table.select([c for c in job.read_columns])
    async with hold_lease(job.store, job=job.config.name) as lease:
        pending = await asyncio.to_thread(job.pending)
        if pending:
            await asyncio.to_thread(job.write_plan)
        index = await asyncio.to_thread(open_index, job, pending, False)
        allowance = await asyncio.to_thread(open_allowance, job)
        try:
            spending = None if allowance is None else allowance.spending
            async with open_engine(
                job, api_key, completer, index=index, spending=spending
            ) as engine:
                engine.progress.rows_total = sample.rows
                lease.on_lost = engine.stop
                enriched = await engine.enrich_chunk(chunk, table, row_ids=sample.row_ids)
        finally:
            await asyncio.to_thread(close_allowance, allowance)
    summary = enriched.summary
    if enriched.table is None:
        kinds = ", ".join(sorted(summary.errors)) or "transient"
        raise SampleIncomplete(
            f"{job.where}: {summary.pending} of {sample.rows} sampled rows still failed "
            f"({kinds}) after every retry; rerun to ask for them again (the rest is kept)"
        )
    return Trial(label, job, enriched.table, summary, time.perf_counter() - started)
