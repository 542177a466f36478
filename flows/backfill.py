"""The backfill flow: a date range of a partitioned job, one child flow run per partition.

Typical use: the prompt or the model changed, or a range of days needs (re)doing. The flow
lists the partitions with input in ``[start, end]``, skips those already committed under the
current config, and starts one run of the partition deployment (``enrich-dataset/enrich`` by
default) per remaining partition, at most ``parallelism`` at a time. Each child is an ordinary
``enrich_dataset`` run: idempotent, resumable, and under an edited prompt it re-requests only the
rows whose request changed (results are keyed by request hash).

Why deployment runs rather than subflows in this process: each partition then runs on
whichever worker polls first, so a backfill scales out by starting more workers, and one
partition crashing (out of memory, a killed machine) does not take the others down. The
children are linked to this run (``as_subflow``), so the UI shows them under it.

At the end the run publishes one table row per partition (state, rows, tokens, cost,
throughput, latency percentiles, errors) read from each child's own table artifact. It fails
when any partition failed; running the backfill again picks up only what is not committed.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment
from prefect.runtime import flow_run

from enrich.config import JobConfig, load_job_config, refuse_api_overrides
from enrich.partitions import date_range, pending
from enrich_flows.enrich import api_key_from_secret_block, job_name
from enrich_flows.partition_report import report_partitions
from enrich_tasks.monitoring import (
    ProgressArtifact,
    artifact_key,
    partition_row,
    read_table_artifact,
    run_tags,
    tag_current_run,
)
from enrich_tasks.partitions import plan_partitions

__all__ = ["PARTITION_DEPLOYMENT", "enrich_backfill"]

#: The deployment each partition runs as (``prefect.yaml``).
PARTITION_DEPLOYMENT = "enrich-dataset/enrich"
POLL_S = 2.0


def _run_name() -> str:
    params: dict[str, Any] = dict(flow_run.parameters)
    name = job_name(str(params.get("config", "job")))
    return f"{name}-backfill-{params.get('start')}-to-{params.get('end')}"


async def _run_partition(
    cfg: JobConfig,
    config: str,
    overrides: list[str],
    partition: str,
    deployment: str,
    parent: str,
) -> dict[str, Any]:
    """Run one partition's deployment to a final state; its row of figures."""
    try:
        child: FlowRun = await arun_deployment(
            deployment,
            parameters={"config": config, "overrides": overrides, "partition": partition},
            flow_run_name=f"{cfg.name}-{partition}",
            tags=["backfill", *run_tags(cfg)],
            # A retried backfill run finds the children it already started.
            idempotency_key=f"backfill-{parent}-{partition}",
            poll_interval=POLL_S,
            as_subflow=True,
        )
    except Exception as exc:  # the deployment is missing, the API is unreachable
        return partition_row(partition, "Not started", message=f"{type(exc).__name__}: {exc}")
    state = child.state
    state_name = (state.name if state is not None else None) or "Unknown"
    found = await read_table_artifact(child.id, artifact_key("enrich", cfg.name, partition))
    figures = found[0] if found else {}
    message = None
    if state is None or not state.is_completed():
        message = (state.message if state is not None else None) or "the run did not complete"
    return partition_row(partition, state_name, figures, flow_run=child.name, message=message)


@flow(name="enrich-backfill", flow_run_name=_run_name, log_prints=False)
async def enrich_backfill(
    config: str,
    start: str,
    end: str,
    parallelism: int = 2,
    overrides: list[str] | None = None,
    deployment: str = PARTITION_DEPLOYMENT,
) -> list[dict[str, Any]]:
    """Enrich every uncommitted partition of ``config`` from ``start`` to ``end`` (included).

    Args:
        config: the job config; its ``input.path`` has a ``{date}`` field.
        start, end: the first and last partition dates, ``YYYY-MM-DD``.
        parallelism: partitions running at once (each a flow run on some worker).
        overrides: ``KEY.PATH=VALUE`` config overrides, passed on to every partition.
        deployment: the deployment that runs one partition (``flow/deployment``).

    Returns one row per date of the range.
    """
    logger = get_run_logger()
    if parallelism < 1:
        raise ValueError(f"parallelism {parallelism}: must be at least 1")
    refuse_api_overrides(overrides or [], config)  # anyone who may start a run sets these
    cfg = load_job_config(config, overrides or [])
    dates = date_range(start, end)
    await tag_current_run([*run_tags(cfg), "backfill"])
    # Known before anything runs, so the report can never show it (and a missing block fails
    # the run before any partition starts).
    secrets = [await api_key_from_secret_block(cfg), os.environ.get(cfg.api.api_key_env)]
    states = await plan_partitions(cfg, start, end)
    present = {s.partition for s in states}
    rows = [partition_row(d, "no input") for d in dates if d not in present]
    rows += [
        partition_row(s.partition, "already committed", rows=s.rows) for s in states if s.committed
    ]
    todo = pending(states)
    logger.info("%s: %d of %d partitions to enrich: %s", cfg.name, len(todo), len(dates), todo)

    key = artifact_key("backfill", cfg.name)
    finished = 0
    progress = await ProgressArtifact.create(
        f"{key}-progress",
        f"Partitions of {cfg.name} done, {start} to {end}",
        lambda: finished / len(todo) if todo else 1.0,
    )
    slots = asyncio.Semaphore(parallelism)
    parent = str(flow_run.get_id())

    async def one(partition: str) -> dict[str, Any]:
        nonlocal finished
        async with slots:
            row = await _run_partition(
                cfg, config, list(overrides or []), partition, deployment, parent
            )
        finished += 1
        progress.nudge()
        logger.info("%s %s: %s", cfg.name, partition, row["state"])
        return row

    follower = asyncio.ensure_future(progress.follow(every=5.0, gap=0.5))
    try:
        rows += await asyncio.gather(*(one(d) for d in todo))
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await progress.finish()

    def note(failed: list[str]) -> str:
        if not failed:
            return ""
        return f"Failed: {', '.join(failed)}. Run the backfill again to retry them."

    title = f"Backfill: {cfg.name} from {start} to {end}"
    return await report_partitions(cfg.name, key, title, rows, note, secrets)
