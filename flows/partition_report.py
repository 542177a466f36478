"""How a flow over partitions ends: its report, then its verdict.

The backfill and the scheduled flow both end with one row per partition. The rows are sorted
by partition and published (a table artifact and a markdown report, secrets masked) before
the verdict, so that a failed run is explained in the UI; the run then fails when any
partition did not end well, naming them (running the flow again retries only those).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from enrich_tasks.monitoring import failed_partitions, partitions_markdown, publish_report

__all__ = ["report_partitions"]


async def report_partitions(
    job: str,
    key: str,
    title: str,
    rows: list[dict[str, Any]],
    note: Callable[[list[str]], str],
    secrets: Iterable[str | None],
) -> list[dict[str, Any]]:
    """Publish ``rows`` under ``key``, with ``note(failed partitions)`` under the table; returns
    the sorted rows, or raises ``RuntimeError`` when any partition failed."""
    rows.sort(key=lambda r: str(r["partition"]))
    failed = failed_partitions(rows)
    await publish_report(
        key,
        rows,
        partitions_markdown(title, rows, note(failed)),
        title,
        secrets=secrets,
    )
    if failed:
        raise RuntimeError(f"{job}: partitions failed: {', '.join(failed)}")
    return rows
