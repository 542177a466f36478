"""The Prefect events a run emits, for automations to react to and the Event Feed to show.

=========================== ==========================================================
``enrich.chunk.committed``   a chunk's part and record are written (its figures)
``enrich.dataset.committed`` the run committed its dataset: manifest and ``_SUCCESS``
``enrich.run.stopped``       the run stopped before committing: ``reason`` is ``quota``
                             (a daily quota is spent), ``budget`` (a budget refused the
                             run, or was reached mid-run: the chunks done are committed),
                             ``error_rate`` (too many error rows), ``job_error`` (a
                             refused key, an unknown model...)
=========================== ==========================================================

Every event's resource is the job's partition (``prefect.resource.id``
``enrich.job.<job>.<partition>``, or ``enrich.job.<job>`` for an unpartitioned job, with
``enrich.job`` and ``enrich.partition`` labels), so an automation matches one job with
``enrich.job.<job>.*`` or every job with ``enrich.job.*``. The payload carries the job, the
partition, the output and the figures. Emitted inside a flow run, an event is related to that
run, its flow, deployment, work pool and tags (Prefect adds them), so the Event Feed links
each event to its run.

The builders are pure (what an event says); :func:`emit` sends one through Prefect's events
client, which batches in the background and never blocks or fails the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.events import emit_event

from enrich.errors import BudgetReached, QuotaExhausted, RunStopped
from enrich.summary import ChunkSummary, JobSummary, Tally

__all__ = [
    "CHUNK_COMMITTED",
    "DATASET_COMMITTED",
    "RUN_STOPPED",
    "EnrichEvent",
    "chunk_committed",
    "committed_now",
    "dataset_committed",
    "emit",
    "run_stopped",
    "stop_reason",
    "summary_stopped",
]

CHUNK_COMMITTED = "enrich.chunk.committed"
DATASET_COMMITTED = "enrich.dataset.committed"
RUN_STOPPED = "enrich.run.stopped"


@dataclass(frozen=True)
class EnrichEvent:
    """One event: its name, the resource it is about, its payload."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any]


def _resource(job: str, partition: str | None) -> dict[str, str]:
    name = job if partition is None else f"{job} {partition}"
    rid = f"enrich.job.{job}" if partition is None else f"enrich.job.{job}.{partition}"
    return {
        "prefect.resource.id": rid,
        "prefect.resource.name": name,
        "enrich.job": job,
        "enrich.partition": partition or "",
    }


def _figures(tally: Tally) -> dict[str, Any]:
    return {
        "rows_ok": tally.ok,
        "rows_failed": tally.failed,
        "requests": tally.requests,
        "reused": tally.reused,
        "prompt_tokens": tally.prompt_tokens,
        "completion_tokens": tally.completion_tokens,
        "cost_usd": round(tally.cost_usd, 6),
    }


def chunk_committed(job: str, partition: str | None, chunk: ChunkSummary) -> EnrichEvent:
    """A chunk committed: its id, label, rows and figures."""
    payload = {
        "job": job,
        "partition": partition,
        "chunk_id": chunk.chunk_id,
        "chunk": chunk.label,
        "rows": chunk.rows,
        **_figures(chunk),
        "elapsed_s": round(chunk.elapsed_s, 3),
    }
    return EnrichEvent(CHUNK_COMMITTED, _resource(job, partition), payload)


def dataset_committed(job: str, partition: str | None, summary: JobSummary) -> EnrichEvent:
    """The run's dataset committed: where, how many rows and chunks, and what this run did."""
    payload = {
        "job": job,
        "partition": partition,
        "output": summary.output,
        "rows": summary.rows,
        "chunks": summary.chunks,
        **_figures(summary),
        "elapsed_s": round(summary.elapsed_s, 3),
        "message": summary.message,
    }
    return EnrichEvent(DATASET_COMMITTED, _resource(job, partition), payload)


def committed_now(summary: JobSummary) -> bool:
    """Whether this run committed the dataset (not: found it committed and did nothing)."""
    return summary.complete and not summary.message.startswith("already committed")


def stop_reason(error: BaseException) -> str | None:
    """Why ``error`` stopped a run (``quota``, ``budget``, ``error_rate``, ``job_error``), or
    None when it
    is not a stop (a crash, bad input: Prefect's own failed-run event says those)."""
    if isinstance(error, QuotaExhausted):
        return "quota"
    if isinstance(error, BudgetReached):
        return "budget"
    if isinstance(error, RunStopped):
        return error.kind
    return None


def run_stopped(
    job: str, partition: str | None, output: str, error: BaseException
) -> EnrichEvent | None:
    """The run stopped before committing, and why; None when ``error`` is not a stop."""
    reason = stop_reason(error)
    if reason is None:
        return None
    payload: dict[str, Any] = {
        "job": job,
        "partition": partition,
        "output": output,
        "reason": reason,
        "message": str(error),
    }
    if isinstance(error, QuotaExhausted):
        payload["quota"] = error.which
        payload["resets_in_s"] = error.resets_in
    return EnrichEvent(RUN_STOPPED, _resource(job, partition), payload)


def summary_stopped(job: str, partition: str | None, summary: JobSummary) -> EnrichEvent | None:
    """The run stopped before the end without raising (``summary.stopped``: its budget was
    reached mid-run), with what it did and, for a budget, what it spent; None when it did not.
    """
    if summary.stopped is None:
        return None
    payload: dict[str, Any] = {
        "job": job,
        "partition": partition,
        "output": summary.output,
        "reason": summary.stopped,
        "message": summary.message,
        "chunks": summary.chunks,
        "chunks_committed": summary.chunks_committed,
        **_figures(summary),
    }
    if summary.spent_usd is not None:
        payload["budget_usd"] = summary.budget_usd
        payload["spent_usd"] = round(summary.spent_usd, 6)
    return EnrichEvent(RUN_STOPPED, _resource(job, partition), payload)


def emit(event: EnrichEvent | None) -> None:
    """Send ``event`` (None: nothing) through Prefect's events client, in the background."""
    if event is not None:
        emit_event(event.event, resource=event.resource, payload=event.payload)
