"""The main flow: plan -> run chunks (several at once, one shared engine) -> commit -> report.

``enrich_dataset`` is what ``enrich run`` calls and what ``prefect.yaml`` deploys. The config is
a path to a job YAML; ``overrides`` are ``KEY=VALUE`` strings as on the command line.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from enrich.config import JobConfig, load_job_config
from enrich.engine import Engine
from enrich.job import Job
from enrich.planning import ChunkSpec
from enrich.report import ChunkSummary, JobSummary
from enrich.run import RunChunk, run_job
from tasks.chunks import enrich_chunk

PROGRESS_EVERY_S = 5.0


def artifact_key(*parts: str) -> str:
    """Artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def _run_name() -> str:
    params: dict[str, Any] = dict(flow_run.parameters)
    stem = str(params.get("config", "job")).rsplit("/", 1)[-1].removesuffix(".yaml")
    partition = params.get("partition")
    return f"{stem}-{partition}" if partition else stem


async def resolve_api_key(config: JobConfig) -> str | None:
    """The key from a Prefect Secret block when the config names one, else None (env)."""
    if not config.api.secret_block:
        return None
    from prefect.blocks.system import Secret

    secret: Secret[str] = await Secret.aload(config.api.secret_block)
    return str(secret.get())


async def _watch(engine: Engine, artifact_id: Any, every: float) -> None:
    """Log throughput and move the progress artifact while chunks run (one updater: in order)."""
    logger = get_run_logger()
    p = engine.progress
    while True:
        await asyncio.sleep(every)
        elapsed = time.perf_counter() - p.started
        logger.info(
            "%d/%d rows (%d failed), %d requests, %.1f rows/s, %d tokens in, %d out",
            p.rows_done,
            p.rows_total,
            p.rows_failed,
            p.requests,
            p.rows_done / elapsed if elapsed else 0.0,
            p.prompt_tokens,
            p.completion_tokens,
        )
        await aupdate_progress_artifact(artifact_id, 100.0 * _share_done(engine))


def _share_done(engine: Engine) -> float:
    p = engine.progress
    return p.rows_done / p.rows_total if p.rows_total else 1.0


async def _report(summary: JobSummary, key: str) -> None:
    await acreate_table_artifact(
        key=key, table=summary.table(), description=f"Enrichment of {summary.job}"
    )
    await acreate_markdown_artifact(
        key=f"{key}-report",
        markdown=summary.markdown(),
        description=f"Enrichment report for {summary.job}",
    )


@flow(name="enrich-dataset", flow_run_name=_run_name, log_prints=False)
async def enrich_dataset(config: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Enrich the dataset a job config describes; returns the run's figures.

    The run fails (and can simply be rerun to resume) when any chunk could not be committed.
    """
    logger = get_run_logger()
    cfg = load_job_config(config, overrides or [])
    job = Job.prepare(cfg, where=config)
    pending = job.pending()
    logger.info(
        "%s: %d rows in %d chunks, %d chunks pending -> %s",
        cfg.name,
        job.rows,
        len(job.chunks),
        len(pending),
        job.store.url,
    )
    key = artifact_key("enrich", cfg.name)

    def in_tasks(engine: Engine) -> RunChunk:
        async def run_chunk(chunk: ChunkSpec, table: pa.Table) -> ChunkSummary:
            named = enrich_chunk.with_options(task_run_name=chunk.label)
            return await named(engine, chunk, table)

        return run_chunk

    async def monitor(engine: Engine) -> None:
        progress_id = await acreate_progress_artifact(
            progress=0.0, key=f"{key}-progress", description=f"Rows enriched for {cfg.name}"
        )
        try:
            await _watch(engine, progress_id, PROGRESS_EVERY_S)
        finally:
            await aupdate_progress_artifact(progress_id, 100.0 * _share_done(engine))

    summary = await run_job(
        job, api_key=await resolve_api_key(cfg), chunk_runner=in_tasks, monitor=monitor
    )
    logger.info(
        "%s: %s; %d ok, %d failed, %.1f rows/s, $%.4f",
        cfg.name,
        summary.message,
        summary.ok,
        summary.failed,
        summary.rows_per_s,
        summary.cost_usd,
    )
    await _report(summary, key)
    if not summary.complete:
        raise RuntimeError(f"{cfg.name}: {summary.message}")
    return summary.table()[0]


def run_enrich(config: str, overrides: list[str] | None = None) -> tuple[bool, dict[str, Any], str]:
    """Run the flow to the end from synchronous code: ``(complete, figures, message)``."""
    state: State[dict[str, Any]] = asyncio.run(
        enrich_dataset(config, overrides, return_state=True)  # type: ignore[arg-type]
    )
    if state.is_completed():
        figures: dict[str, Any] = state.result()
        return True, figures, f"committed to {figures.get('output', 'the output')}"
    return False, {}, str(state.result(raise_on_failure=False))
