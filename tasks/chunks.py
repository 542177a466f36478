"""The chunk task: one Prefect task run per chunk, never per row.

Chunk tasks are awaited directly and gathered on the flow's own event loop (never
``.submit()``/``.map()``: those run each async task on a new thread and loop, where the shared
client and rate controller cannot follow). They return a small summary, never data; the
checkpoints are the engine's journal and commit records, so Prefect result caching is off.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.logging import get_run_logger

from enrich.engine import Engine
from enrich.errors import StorageError
from enrich.planning import ChunkSpec
from enrich.summary import ChunkSummary


async def _storage_fault(task: object, task_run: object, state: State[Any]) -> bool:
    """Retry a chunk only for storage faults: its journal makes the retry cost nothing.

    Async, as the task is: Prefect awaits it, and a failed state's exception is re-raised by
    ``aresult`` (``result`` would hand back an unawaited coroutine here and never raise).
    """
    try:
        await state.aresult()
    except StorageError:
        return True
    except BaseException:
        return False
    return False


@task(
    name="enrich-chunk",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_storage_fault,
)
async def enrich_chunk(engine: Engine, chunk: ChunkSpec, table: pa.Table) -> ChunkSummary:
    """Enrich and commit one chunk with the flow's shared engine."""
    summary = await engine.run_chunk(chunk, table)
    logger = get_run_logger()
    logger.info(
        "%s: %d ok, %d failed, %d pending, %d requests, %d reused in %.1f s",
        chunk.label,
        summary.ok,
        summary.failed,
        summary.pending,
        summary.requests,
        summary.reused,
        summary.elapsed_s,
    )
    return summary
