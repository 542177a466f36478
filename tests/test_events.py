"""What the events a run emits say: names, the partition as resource, figures, why it stopped.

Pure: the builders of :mod:`enrich_tasks.events`; reading them back from a server is
``tests/test_prefect_events.py``.
"""

from __future__ import annotations

import pytest

from enrich.errors import BudgetReached, InputError, QuotaExhausted, RunStopped
from enrich.summary import ChunkSummary, JobSummary
from enrich_tasks.events import (
    chunk_committed,
    committed_now,
    dataset_committed,
    run_stopped,
    stop_reason,
    summary_stopped,
)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (QuotaExhausted("requests", 3600.0), "quota"),
        (BudgetReached("this month's budget is spent"), "budget"),
        (RunStopped("9 of 20 rows failed"), "job_error"),
        (RunStopped("the API refused the key", kind="job_error"), "job_error"),
        (RunStopped("15 of 20 rows failed", kind="error_rate"), "error_rate"),
        (InputError("in.jsonl:3: not JSON"), None),  # not a stop: the failed run says it
        (RuntimeError("boom"), None),
    ],
)
def test_why_a_run_stopped(error: BaseException, reason: str | None) -> None:
    assert stop_reason(error) == reason


@pytest.mark.parametrize(
    ("partition", "rid", "name"),
    [
        ("2026-11-20", "enrich.job.reviews_daily.2026-11-20", "reviews_daily 2026-11-20"),
        (None, "enrich.job.reviews_daily", "reviews_daily"),
    ],
)
def test_the_resource_is_the_jobs_partition(partition: str | None, rid: str, name: str) -> None:
    chunk = ChunkSummary(chunk_id="c1", label="chunk-000-000000000", rows=5, ok=4, failed=1)
    event = chunk_committed("reviews_daily", partition, chunk)
    assert event.resource == {
        "prefect.resource.id": rid,
        "prefect.resource.name": name,
        "enrich.job": "reviews_daily",
        "enrich.partition": partition or "",
    }


def test_a_chunk_committed_carries_its_figures() -> None:
    chunk = ChunkSummary(
        chunk_id="c1",
        label="chunk-000-000000005",
        rows=5,
        ok=4,
        failed=1,
        requests=4,
        reused=1,
        prompt_tokens=100,
        completion_tokens=20,
        cost_usd=0.0000512345678,
        elapsed_s=1.23456,
        committed=True,
    )
    event = chunk_committed("j", "2026-11-20", chunk)
    assert event.event == "enrich.chunk.committed"
    assert event.payload == {
        "job": "j",
        "partition": "2026-11-20",
        "chunk_id": "c1",
        "chunk": "chunk-000-000000005",
        "rows": 5,
        "rows_ok": 4,
        "rows_failed": 1,
        "requests": 4,
        "reused": 1,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cost_usd": 0.000051,
        "elapsed_s": 1.235,
    }


def summary(message: str, complete: bool = True) -> JobSummary:
    return JobSummary(
        job="j", output="s3://out/j", chunks=3, rows=12, ok=12, complete=complete, message=message
    )


@pytest.mark.parametrize(
    ("done", "now"),
    [
        (summary("committed 12 rows in 3 parts"), True),
        (summary("committed 12 rows in 3 parts; 2 rows failed (status error)"), True),
        (summary("already committed; nothing to do"), False),
        (summary("1 of 3 chunks not committed (2 rows failed transiently)", False), False),
    ],
)
def test_a_dataset_is_committed_now_only_by_a_run_that_wrote_it(
    done: JobSummary, now: bool
) -> None:
    assert committed_now(done) is now


def test_a_dataset_committed_says_where_and_what() -> None:
    event = dataset_committed("j", None, summary("committed 12 rows in 3 parts"))
    assert event.event == "enrich.dataset.committed"
    assert {k: event.payload[k] for k in ("job", "partition", "output", "rows", "chunks")} == {
        "job": "j",
        "partition": None,
        "output": "s3://out/j",
        "rows": 12,
        "chunks": 3,
    }
    assert event.payload["rows_ok"] == 12 and event.payload["message"].startswith("committed")


def test_a_stopped_run_says_why_and_a_quota_which() -> None:
    quota = run_stopped("j", "2026-11-20", "out/j", QuotaExhausted("requests", 120.0))
    assert quota is not None and quota.event == "enrich.run.stopped"
    assert quota.payload == {
        "job": "j",
        "partition": "2026-11-20",
        "output": "out/j",
        "reason": "quota",
        "message": "daily requests quota exhausted; it resets in 120 s; rerun the job to resume",
        "quota": "requests",
        "resets_in_s": 120.0,
    }
    rate = run_stopped("j", None, "out/j", RunStopped("15 of 20 rows failed", kind="error_rate"))
    assert rate is not None and rate.payload["reason"] == "error_rate"
    assert run_stopped("j", None, "out/j", InputError("bad")) is None


def test_a_budget_reached_mid_run_is_a_stop_with_what_was_spent() -> None:
    message = "budget of $0.005 reached after $0.0049; rerun with a higher budget to resume"
    reached = summary(f"{message} (1 of 3 chunks committed)", False)
    reached.chunks_committed, reached.budget_usd, reached.spent_usd = 1, 0.005, 0.0049
    reached.stopped = "budget"
    event = summary_stopped("j", "2026-11-20", reached)
    assert event is not None and event.event == "enrich.run.stopped"
    assert event.resource["prefect.resource.id"] == "enrich.job.j.2026-11-20"
    assert {k: event.payload[k] for k in ("reason", "chunks", "chunks_committed")} == {
        "reason": "budget",
        "chunks": 3,
        "chunks_committed": 1,
    }
    assert (event.payload["budget_usd"], event.payload["spent_usd"]) == (0.005, 0.0049)
    assert event.payload["message"].startswith("budget of $0.005 reached")
    # A run that was not stopped, committed or not, says nothing of the kind.
    assert summary_stopped("j", None, summary("committed 12 rows in 3 parts")) is None
    not_yet = summary("1 of 3 chunks not committed (2 rows failed transiently)", False)
    assert summary_stopped("j", None, not_yet) is None
