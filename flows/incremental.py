"""The scheduled flow: enrich every partition up to the run's date that is not committed yet.

``prefect.yaml`` deploys it on a daily cron. Each run works out the last partition it covers
(``date``, by default the day before its scheduled start in ``timezone``), lists the input's
partitions in the ``lookback_days`` up to it, and enriches, one after the other, those whose
output is not committed under the current config. What is done lives with the output in
storage (see :mod:`enrich.partitions`), so a missed day is caught up by the next run and a
rerun of the same slot sends nothing.

Partitions run as subflows in this process: a schedule usually has one partition to do, and
sharing the process avoids a second start-up. A backfill over many partitions fans out
across workers instead (:mod:`enrich_flows.backfill`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from enrich.config import load_job_config, refuse_api_overrides
from enrich.partitions import logical_date, parse_date, pending
from enrich_flows.enrich import api_key_from_secret_block, enrich_dataset, job_name
from enrich_flows.partition_report import report_partitions
from enrich_tasks.monitoring import (
    artifact_key,
    partition_row,
    run_tags,
    tag_current_run,
)
from enrich_tasks.partitions import plan_partitions

__all__ = ["enrich_incremental", "through_date"]


def through_date(date: str | None, timezone: str, lag_days: int) -> str:
    """The last partition this run covers: ``date`` if given, else from the scheduled start."""
    if date:
        return parse_date(date, "date").isoformat()
    return logical_date(flow_run.get_scheduled_start_time(), timezone, lag_days)


def _run_name() -> str:
    params: dict[str, Any] = dict(flow_run.parameters)
    through = through_date(
        params.get("date"), params.get("timezone") or "UTC", int(params.get("lag_days", 1))
    )
    return f"{job_name(str(params.get('config', 'job')))}-through-{through}"


@flow(name="enrich-incremental", flow_run_name=_run_name, log_prints=False)
async def enrich_incremental(
    config: str,
    date: str | None = None,
    lookback_days: int | None = 31,
    lag_days: int = 1,
    timezone: str = "UTC",
    overrides: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Enrich the uncommitted partitions of ``config`` from ``lookback_days`` before ``date``.

    Args:
        config: the job config; its ``input.path`` has a ``{date}`` field.
        date: the last partition to cover (``YYYY-MM-DD``); by default the scheduled start's
            date in ``timezone`` minus ``lag_days``.
        lookback_days: how many days up to ``date`` to look at (``None``: every partition).
            A changed prompt re-enriches at most this window; older dates are a backfill's.
        lag_days: days between a partition and the run that covers it (1: yesterday's).
        timezone: the schedule's time zone, for the default ``date``.
        overrides: ``KEY.PATH=VALUE`` config overrides, as on the command line.

    Returns one row per partition looked at. The run fails, after reporting, when any
    partition failed; the next run retries only what is still not committed.
    """
    logger = get_run_logger()
    refuse_api_overrides(overrides or [], config)  # anyone who may start a run sets these
    cfg = load_job_config(config, overrides or [])
    through = through_date(date, timezone, lag_days)
    since = None
    if lookback_days is not None:
        since = (parse_date(through) - timedelta(days=max(lookback_days, 1) - 1)).isoformat()
    await tag_current_run([*run_tags(cfg), "incremental"])
    # Known before anything runs, so the report can never show it (and a missing block fails
    # the run before any partition starts).
    secrets = [await api_key_from_secret_block(cfg), os.environ.get(cfg.api.api_key_env)]
    states = await plan_partitions(cfg, since, through)
    rows = [
        partition_row(s.partition, "already committed", rows=s.rows) for s in states if s.committed
    ]
    todo = pending(states)
    logger.info("%s: %d partitions to enrich up to %s: %s", cfg.name, len(todo), through, todo)
    for partition in todo:
        state = await enrich_dataset(config, overrides, partition, return_state=True)
        name = f"{cfg.name}-{partition}"
        if state.is_completed():
            rows.append(partition_row(partition, "Completed", await state.aresult(), flow_run=name))
        else:
            message = state.message or "the run did not complete"
            rows.append(
                partition_row(partition, state.name or "Failed", flow_run=name, message=message)
            )
    title = f"Incremental enrichment: {cfg.name} through {through}"
    note = "Nothing to do: every partition is committed." if not todo else ""
    key = artifact_key("incremental", cfg.name)
    return await report_partitions(cfg.name, key, title, rows, lambda _: note, secrets)
