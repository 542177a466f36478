"""The engine end to end against the simulator (real SDK, real HTTP), without Prefect."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pytest
from support import (
    JobFactory,
    Location,
    by_row,
    eventually,
    job_on,
    prepare_job,
    review_rows,
    run_config,
    simulator,
    write_jsonl,
)

from enrich.catalogue import OFFLINE_ENV
from enrich.errors import QuotaExhausted
from enrich.job import Job
from enrich.output.index import ResultIndex
from enrich.output.layout import LAYOUT
from enrich.output.reader import output_status, read_dataset
from enrich.run import run_job
from enrich.sim.config import Limits
from enrich.sim.harness import ThreadedSimulator


def journaled(job: Job) -> set[str]:
    """The request hashes whose results the output holds (journaled or in a part)."""
    return set(ResultIndex.build(job.store, completion_column="completion"))


def test_every_row_once_and_tokens_match_the_simulator(
    sim: ThreadedSimulator, make_job: JobFactory, location: Location
) -> None:
    """Input, output and checkpoints all on one backend: file://, memory:// and s3://."""
    rows = review_rows(40, duplicates=4)
    options = location.storage_options
    config = job_on(location, make_job, rows)
    job, summary = run_config(config)
    assert summary.complete
    table = read_dataset(job.store.url, options)
    assert table.num_rows == 40
    assert sorted(table.column("row_id").to_pylist()) == sorted(r["review_id"] for r in rows)
    assert set(table.column("status").to_pylist()) == {"ok"}
    stats = sim.stats
    # Four rows repeat earlier requests: they are sent once and both rows are filled.
    assert stats.requests == 36
    assert sum(table.column("prompt_tokens").to_pylist()) == stats.prompt_tokens
    assert sum(table.column("completion_tokens").to_pylist()) == stats.completion_tokens
    dup = table.filter(pa.compute.starts_with(table.column("row_id"), "r-dup-"))
    assert dup.num_rows == 4 and all(dup.column("completion").to_pylist())
    assert sum(dup.column("cost_usd").to_pylist()) == 0
    status = output_status(job.store.url, options)
    assert status.complete and status.manifest_rows == 40 and status.lease is None
    # Only the committed dataset is left: parts, records, manifest, marker, plan.
    leftovers = {k.split("/", 1)[0] for k in location.store("out").keys("")}
    assert leftovers == {"parts", "_chunks", "_manifest.json", "_SUCCESS", "_plan.json"}


def test_rerun_of_a_finished_job_sends_nothing(
    sim: ThreadedSimulator, make_job: JobFactory, location: Location
) -> None:
    config = job_on(location, make_job, review_rows(15))
    run_config(config)
    before = sim.stats.requests
    _, summary = run_config(config)
    assert summary.complete
    assert sim.stats.requests == before


def test_prompt_change_resends_only_changed_requests(
    sim: ThreadedSimulator, make_job: JobFactory, location: Location
) -> None:
    rows = review_rows(20)
    for i, row in enumerate(rows):
        row["note"] = "" if i % 2 else " (verified buyer)"
    config = job_on(location, make_job, rows, prompt={"system": "Classify.", "template": "{text}"})
    run_config(config)
    assert sim.stats.requests == 20
    sim.reset()
    job, summary = run_config(config, ["prompt.template={text}{note}"])
    assert summary.complete
    assert sim.stats.requests == 10  # only rows whose rendered request changed
    assert read_dataset(job.store.url, location.storage_options).num_rows == 20


def test_interrupted_run_resumes_without_asking_again(
    make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulator(monkeypatch, ttft=0.02, tokens_per_second=400) as slow:
        config = make_job(
            review_rows(60),
            execution={"rows_per_chunk": 30, "max_concurrency": 4, "chunks_in_flight": 1},
        )
        job = prepare_job(config)

        async def interrupted() -> None:
            task = asyncio.ensure_future(run_job(job))
            await eventually(lambda: slow.stats.completed >= 12)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        asyncio.run(interrupted())
        first = slow.stats.requests
        known = journaled(job)
        assert job.store.keys(LAYOUT.journal), "results were journaled before the interruption"
        assert 0 < len(known) < 60
        slow.reset()
        _, summary = run_config(config)
        assert summary.complete
        assert slow.stats.requests == 60 - len(known)
        assert first + slow.stats.requests <= 60 + 4  # at most the requests in flight, twice


def test_permanent_errors_are_rows_transient_ones_are_retried_on_rerun(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    rows = review_rows(10)
    config = make_job(rows)
    sim.set_faults(fail_503=1.0)
    job, summary = run_config(config)
    assert not summary.complete
    assert summary.pending == 10
    assert not job.store.exists("_SUCCESS")
    sim.set_faults(fail_503=0.0)
    _, summary = run_config(config)
    assert summary.complete
    assert read_dataset(job.store.url).num_rows == 10


def test_context_overflow_is_an_error_row_not_a_missing_row(
    make_job: JobFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulator(monkeypatch, context_length=120) as small:
        # The catalogue (the snapshot, offline) does not know this server's small window:
        # the row is sent, and the server's 400 makes it an error row.
        monkeypatch.setenv(OFFLINE_ENV, "1")
        rows = review_rows(6)
        rows[2]["text"] = "very long " * 80
        job, summary = run_config(make_job(rows))
        assert summary.complete
        table = read_dataset(job.store.url)
        statuses = by_row(table, "status")
        assert statuses.pop("r-00002") == "error"
        assert set(statuses.values()) == {"ok"}
        assert small.stats.requests == 6  # a 400 is not retried


def test_jsonl_output(sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path) -> None:
    job, summary = run_config(
        make_job(review_rows(9), output={"path": str(tmp_path / "o"), "format": "jsonl"})
    )
    assert summary.complete
    assert read_dataset(job.store.url).num_rows == 9


def test_input_glob_of_many_files(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    for part in range(3):
        write_jsonl(
            tmp_path / "many" / f"p{part}.jsonl",
            [{**r, "review_id": f"{part}-{r['review_id']}"} for r in review_rows(5)],
        )
    job, summary = run_config(make_job(input_path=str(tmp_path / "many" / "*.jsonl")))
    assert summary.complete
    assert read_dataset(job.store.url).num_rows == 15


def test_a_fixed_input_file_resends_only_the_rows_that_changed(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    rows = review_rows(20)
    source = write_jsonl(tmp_path / "in" / "reviews.jsonl", rows)
    config = make_job(input_path=str(source))
    run_config(config)
    sim.reset()
    rows[5]["text"] = "Corrected: the product did well after all."
    write_jsonl(source, rows)  # a new version of the same file
    job, summary = run_config(config)
    assert summary.complete
    assert sim.stats.requests == 1
    table = read_dataset(job.store.url)
    assert table.num_rows == 20
    texts = by_row(table, "text")
    assert texts["r-00005"].startswith("Corrected")


def test_a_spent_daily_quota_stops_the_run_and_keeps_every_paid_result(
    make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulator(monkeypatch, ttft=0.02, limits=Limits(rpd=25)) as limited:
        execution = {"rows_per_chunk": 10, "chunks_in_flight": 3, "max_concurrency": 8}
        config = make_job(review_rows(60), execution=execution)
        job = prepare_job(config)
        with pytest.raises(QuotaExhausted, match="resets in"):
            asyncio.run(run_job(job))
        known = journaled(job)
        # Every request the server answered (and charged) left a result behind.
        assert len(known) == limited.stats.by_status[200] == 25
        assert not job.store.exists("_SUCCESS")
