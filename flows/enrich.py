"""The main flow: plan -> run chunks (several at once, one shared engine) -> commit -> report.

``enrich_dataset`` is what ``enrich run`` calls and what ``prefect.yaml`` deploys. The config is
a path to a job YAML; ``overrides`` are ``KEY=VALUE`` strings as on the command line;
``partition`` (a date, ``YYYY-MM-DD``) picks one partition of a job whose ``input.path`` has a
``{date}`` field (see :mod:`enrich.partitions`). The schedule and the backfill run this flow once
per partition.

In the UI a run is named after its job and partition, tagged with the job and the model, moves
a progress artifact as chunks finish, and ends with a table and a markdown report. It emits
events (:mod:`enrich_tasks.events`): each chunk committed, the dataset committed, or why it
stopped.

A run prepares its job once (discovering and counting the input is a full read of it). When the
caller in this process has prepared it already, as ``enrich run`` does to fail before Prefect
starts, :func:`run_enrich` hands that job to the flow run instead of a second preparation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Cancelled

from enrich.config import JobConfig, load_job_config, refuse_api_overrides
from enrich.engine import Engine, ProgressObserver, RunProgress
from enrich.errors import BudgetReached, ConfigError, EnrichError, QuotaExhausted, RunStopped
from enrich.job import Job
from enrich.lease import LeaseRevoked
from enrich.partitions import for_partition
from enrich.planning import ChunkSpec
from enrich.run import RunChunk, run_job
from enrich.shards import ShardRef, run_shard, run_sharded, shard_job, shards_for
from enrich.summary import ChunkSummary, JobSummary
from enrich_flows.shards import ORPHANED, ShardRuns, shard_deployment
from enrich_tasks.chunks import enrich_chunk
from enrich_tasks.events import (
    chunk_committed,
    committed_now,
    dataset_committed,
    emit,
    run_stopped,
    summary_stopped,
)
from enrich_tasks.fleet import fleet_grants
from enrich_tasks.monitoring import (
    ProgressArtifact,
    artifact_key,
    errors_cell,
    publish_report,
    run_tags,
    tag_current_run,
)

__all__ = [
    "api_key_from_secret_block",
    "artifact_key",
    "enrich_dataset",
    "job_name",
    "run_enrich",
]

# Each progress update and log line is a write on the server (about 10 ms of its CPU and 5
# of ours): a finished chunk moves the bar, no more often than every PROGRESS_GAP_S, and
# between chunks the bar and a log line of the counters move every PROGRESS_EVERY_S.
PROGRESS_EVERY_S = 15.0
PROGRESS_GAP_S = 2.0


@dataclasses.dataclass(frozen=True)
class _InProcess:
    """What :func:`run_enrich`'s caller hands the flow run it starts in this process.

    Not flow parameters: a deployment or the UI never sees them, and a flow run started
    elsewhere simply has none.
    """

    job: Job | None = None
    observer: ProgressObserver | None = None


_NOTHING_IN_PROCESS = _InProcess()
_in_process: ContextVar[_InProcess] = ContextVar("in_process", default=_NOTHING_IN_PROCESS)


def job_name(config: str) -> str:
    """The job's name for run names: the config's ``name``, else the file's stem."""
    try:
        return load_job_config(config).name
    except EnrichError:
        return Path(config).stem


def _run_name() -> str:
    params: dict[str, Any] = dict(flow_run.parameters)
    name = job_name(str(params.get("config", "job")))
    partition = params.get("partition")
    name = f"{name}-{partition}" if partition else name
    shard = params.get("shard")
    if shard:
        try:
            ref = ShardRef.parse(str(shard))
        except ValueError:
            return name
        return f"{name}-shard-{ref.number}-of-{ref.count}"
    return name


async def prepare_job(cfg: JobConfig, where: str) -> Job:
    """The run's job: the one prepared by the caller for this very config, else a new one."""
    prepared = _in_process.get().job
    if prepared is not None and prepared.config == cfg:
        return prepared
    return await asyncio.to_thread(Job.prepare, cfg, where)


async def api_key_from_secret_block(config: JobConfig) -> str | None:
    """The key from a Prefect Secret block when the config names one, else None (env)."""
    if not config.api.secret_block:
        return None
    from prefect.blocks.system import Secret

    secret: Secret[str] = await Secret.aload(config.api.secret_block)
    return str(secret.get())


def _share_done(runs: list[RunProgress]) -> float:
    """The share of rows done in the run that ``runs`` observed (0 before it starts)."""
    if not runs:
        return 0.0
    p = runs[0]
    return p.rows_done / p.rows_total if p.rows_total else 1.0


def _log_progress(runs: list[RunProgress]) -> None:
    if not runs:
        return
    p = runs[0]
    elapsed = time.perf_counter() - p.started
    get_run_logger().info(
        "%d/%d rows (%d failed), %d requests, %.1f rows/s, %d tokens in, %d out",
        p.rows_done,
        p.rows_total,
        p.rows_failed,
        p.requests,
        p.rows_done / elapsed if elapsed else 0.0,
        p.prompt_tokens,
        p.completion_tokens,
    )


def figures(summary: JobSummary, partition: str | None) -> dict[str, Any]:
    """The run's row of figures: the summary's, plus the partition and errors by kind."""
    row = summary.table()[0]
    if partition is not None:
        row = {"partition": partition, **row}
    row["errors"] = errors_cell(summary.errors)
    return row


def _shard_ref(shard: str | None, config: str) -> ShardRef | None:
    if shard is None:
        return None
    try:
        return ShardRef.parse(shard)
    except ValueError as exc:
        raise ConfigError(f"{config}: {exc}") from None


def _shard_parameters() -> dict[str, Any]:
    """This run's parameters a shard's run is started with (not ``shard`` itself)."""
    given = dict(flow_run.parameters)
    return {k: given.get(k) for k in ("config", "overrides", "partition")}


async def _shard_runs(
    cfg: JobConfig,
    job: Job,
    pending: list[ChunkSpec],
    label: str,
    retry_errors: bool,
    ref: ShardRef | None,
    parameters: dict[str, Any],
) -> ShardRuns | None:
    """The shards' runs when this run splits into shards (see :func:`enrich_dataset`)."""
    parallelism = cfg.execution.parallelism
    if ref is not None or parallelism == 1 or shards_for(job, len(pending)) == 1:
        return None
    logger = get_run_logger()
    if retry_errors:
        logger.info("%s: asking error rows again runs in this one run, not in shards", label)
        return None
    deployment = await shard_deployment(parallelism)

    def say(line: str) -> None:
        logger.info("%s", line)

    return ShardRuns(cfg, parameters, deployment, job.store, label, say)


@flow(name="enrich-dataset", flow_run_name=_run_name, log_prints=False)
async def enrich_dataset(
    config: str,
    overrides: list[str] | None = None,
    partition: str | None = None,
    retry_errors: bool = False,
    shard: str | None = None,
) -> dict[str, Any]:
    """Enrich the dataset a job config describes (one partition of it); returns the figures.

    The run fails (and can simply be rerun to resume) when any chunk could not be committed.
    A rerun of a committed dataset or partition sends nothing, unless ``retry_errors`` asks
    again for its error rows (``enrich run --retry-errors``).

    With ``execution.parallelism`` above 1 a run with enough chunks splits into shards, each a
    run of this flow's deployment with ``shard`` set (``<run>/<number>/<count>``: started by
    the splitting run, never by hand), and commits the dataset when they are done
    (:mod:`enrich_flows.shards`). A shard whose splitting run is gone (cancelled, crashed or
    over) stops and ends Cancelled (``Orphaned``), not Failed: nobody waits for its work, and
    an automation watching for failed runs is not set off once per shard.
    """
    try:
        return await _enrich(config, overrides, partition, retry_errors, shard)
    except LeaseRevoked as revoked:
        if shard is None:
            raise
        get_run_logger().warning("%s", revoked)
        # A flow run ends in the state its flow returns (the figures' type does not say so).
        return Cancelled(message=str(revoked), name=ORPHANED)  # type: ignore[return-value]


async def _enrich(
    config: str,
    overrides: list[str] | None,
    partition: str | None,
    retry_errors: bool,
    shard: str | None,
) -> dict[str, Any]:
    """The body of :func:`enrich_dataset`, in its flow run."""
    logger = get_run_logger()
    refuse_api_overrides(overrides or [], config)  # anyone who may start a run sets these
    cfg = for_partition(load_job_config(config, overrides or []), partition)
    ref = _shard_ref(shard, config)
    label = f"{cfg.name} {partition}" if partition else cfg.name
    if ref is not None:
        label = f"{label} {ref.label}"
    # Two round trips to the server that need not wait for each other.
    tagged = asyncio.ensure_future(tag_current_run(run_tags(cfg)))
    try:
        if ref is not None:  # the input as the run that split the job surveyed it
            job = await asyncio.to_thread(shard_job, cfg, ref, config)
        else:
            job = await prepare_job(cfg, config)  # a model no longer served is refused here
    finally:
        await tagged
    for note in job.notes:  # a deprecated model, say
        logger.warning("%s: %s", label, note)
    pending = job.pending()
    logger.info(
        "%s: %d rows in %d chunks, %d chunks pending -> %s",
        label,
        job.rows,
        len(job.chunks),
        len(pending),
        job.store.url,
    )
    key = artifact_key("enrich", cfg.name, partition or "", f"shard-{ref.number}" if ref else "")
    api_key = await api_key_from_secret_block(cfg)
    shard_runs = await _shard_runs(cfg, job, pending, label, retry_errors, ref, _shard_parameters())
    # The account's per-minute budget, shared with every other run of the fleet.
    grants = await fleet_grants(cfg) if pending and shard_runs is None else None
    if grants is not None:
        logger.info("%s: sharing the fleet budget %s", label, " and ".join(grants.names))
    runs: list[RunProgress] = []  # the run's live counters, once it starts sending

    def share_done() -> float:
        return shard_runs.share_done if shard_runs is not None else _share_done(runs)

    # Made before the run, not by the monitor: a run that ends while the artifact is still
    # being created would cancel the monitor before it could show 100 %.
    shown = (
        await ProgressArtifact.create(f"{key}-progress", f"Rows enriched for {label}", share_done)
        if pending
        else None
    )

    def observe(progress: RunProgress) -> None:
        runs.append(progress)
        caller = _in_process.get().observer
        if caller is not None:
            caller(progress)

    def in_tasks(engine: Engine) -> RunChunk:
        async def run_chunk(chunk: ChunkSpec, table: pa.Table) -> ChunkSummary:
            named = enrich_chunk.with_options(task_run_name=chunk.label)
            try:
                done = await named(engine, chunk, table)
            finally:
                if shown is not None:
                    shown.nudge()
            if done.committed:
                emit(chunk_committed(cfg.name, partition, done))
            return done

        return run_chunk

    async def monitor(engine: Engine) -> None:
        if shown is not None:
            await shown.follow(PROGRESS_EVERY_S, PROGRESS_GAP_S, lambda: _log_progress(runs))

    # Tags go on the flow run only: a tagged task run asks the server for tag concurrency
    # slots before it starts, a round trip per chunk that a busy SQLite server answers late.
    try:
        if shard_runs is not None:
            summary = await run_sharded(job, shard_runs)
        elif ref is not None:
            summary = await run_shard(
                job,
                ref,
                api_key=api_key,
                chunk_runner=in_tasks,
                monitor=monitor,
                observer=observe,
                grants=grants,
            )
        else:
            summary = await run_job(
                job,
                api_key=api_key,
                chunk_runner=in_tasks,
                monitor=monitor,
                observer=observe,
                retry_errors=retry_errors,
                grants=grants,
            )
    except (
        RunStopped,
        QuotaExhausted,
        BudgetReached,
    ) as stop:  # for automations: which job, and why
        if not isinstance(stop, LeaseRevoked):  # a shard of a run that is gone: not news
            emit(run_stopped(cfg.name, partition, job.store.url, stop))
        raise
    finally:
        if shown is not None:
            await shown.finish()
    if ref is None and committed_now(summary):  # a shard commits chunks, not the dataset
        emit(dataset_committed(cfg.name, partition, summary))
    emit(summary_stopped(cfg.name, partition, summary))  # a budget reached mid-run
    logger.info(
        "%s: %s; %d ok, %d failed, %.1f rows/s, $%.4f",
        label,
        summary.message,
        summary.ok,
        summary.failed,
        summary.rows_per_s,
        summary.cost_usd,
    )
    row = figures(summary, partition)
    secrets = [api_key, os.environ.get(cfg.api.api_key_env)]
    report = dataclasses.replace(summary, job=label).markdown()
    await publish_report(key, [row], report, f"Enrichment of {label}", secrets=secrets)
    if not summary.complete:
        raise RuntimeError(f"{label}: {summary.message}")
    return row


def run_enrich(
    config: str,
    overrides: list[str] | None = None,
    partition: str | None = None,
    observer: ProgressObserver | None = None,
    job: Job | None = None,
    *,
    retry_errors: bool = False,
) -> tuple[bool, dict[str, Any], str]:
    """Run the flow to the end from synchronous code: ``(complete, figures, message)``.

    ``job``, when the caller prepared it already from the same config, overrides and
    partition, is the one the flow run uses (a job that does not match is prepared anew).
    ``observer`` is handed the run's live counters when it starts (the CLI's progress bar).
    """
    token = _in_process.set(_InProcess(job, observer))
    try:
        state: State[dict[str, Any]] = asyncio.run(
            enrich_dataset(  # type: ignore[arg-type]
                config, overrides, partition, retry_errors, return_state=True
            )
        )
    finally:
        _in_process.reset(token)
    if state.is_completed():
        result: dict[str, Any] = state.result()
        return True, result, f"committed to {result.get('output', 'the output')}"
    return False, {}, str(state.result(raise_on_failure=False))
