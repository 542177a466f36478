"""The partition planning task: which partitions of a date range exist and which are done.

A thin adapter over :mod:`enrich.partitions`; the listing and the few small reads it makes run
in a worker thread, so the flow's event loop keeps serving the UI meanwhile.
"""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from enrich.config import JobConfig
from enrich.partitions import PartitionState, list_partitions, partition_state, select


@task(name="plan-partitions", cache_policy=NO_CACHE)
async def plan_partitions(
    config: JobConfig, start: str | None, end: str | None
) -> list[PartitionState]:
    """The partitions with input between ``start`` and ``end`` (included), and their state."""

    def plan() -> list[PartitionState]:
        dates = select(list_partitions(config), start, end)
        return [partition_state(config, d) for d in dates]

    states = await asyncio.to_thread(plan)
    done = sum(s.committed for s in states)
    get_run_logger().info(
        "%s: %d partitions with input from %s to %s, %d committed, %d to run",
        config.name,
        len(states),
        start or "the first",
        end or "the last",
        done,
        len(states) - done,
    )
    return states
