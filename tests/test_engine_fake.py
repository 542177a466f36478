"""The engine through its port: a FakeCompleter answers in memory, no HTTP, no simulator.

What is checked here is the engine's own bookkeeping: what it sends, what it shares, what
becomes an error row and what stays pending. The wire (SDK, HTTP, error bodies) is tested in
test_engine.py against the simulator.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from support import (
    JobFactory,
    answer,
    by_row,
    eventually,
    prepare_job,
    review_rows,
    run_config,
    user_text,
    write_jsonl,
)

from enrich.completer import Completion, CompletionRequest, FakeCompleter, Handler
from enrich.engine import Engine, RunProgress
from enrich.errors import CompletionError
from enrich.job import Job
from enrich.output.reader import read_dataset
from enrich.ratelimit import RateController
from enrich.summary import ChunkSummary, JobSummary
from enrich.tokens import count_prompt_tokens


def run(config: Path, handler: Handler, **kw: Any) -> tuple[Job, JobSummary, FakeCompleter]:
    """Run ``config`` with a FakeCompleter answering by ``handler``."""
    completer = FakeCompleter(handler)
    job, summary = run_config(config, completer=completer, **kw)
    return job, summary, completer


def test_a_repeated_request_is_sent_once_and_fills_every_row(make_job: JobFactory) -> None:
    # Rows 10-13 repeat rows 0-3: the same chunk (rows 0-6 and 7-13 with 7 rows a chunk) or
    # an earlier one.
    rows = review_rows(14, duplicates=4)
    job, summary, completer = run(make_job(rows), answer)
    assert summary.complete
    texts = Counter(user_text(r) for r in completer.requests)
    assert len(texts) == 10 and set(texts.values()) == {1}
    table = read_dataset(job.store.url)
    completions = by_row(table, "completion")
    for j in range(4):
        assert completions[f"r-dup-{j:05d}"] == completions[f"r-{j:05d}"]
    # Exactly one row of each pair carries the cost: whichever chunk sent the request first
    # (the two chunks run at once, so which one that is is not fixed).
    costs = by_row(table, "cost_usd")
    for j in range(4):
        pair = sorted([costs[f"r-{j:05d}"], costs[f"r-dup-{j:05d}"]])
        assert pair[0] == 0 < pair[1]
    assert sum(table.column("prompt_tokens").to_pylist()) == sum(
        count_prompt_tokens(r.messages) for r in completer.requests
    )
    assert (summary.ok, summary.reused) == (14, 4)


def test_the_automatic_chunk_size_keeps_the_chunks_of_a_file_when_another_is_added(
    make_job: JobFactory, tmp_path: Path
) -> None:
    rows = review_rows(650)  # distinct texts: the second file asks for new requests
    folder = tmp_path / "daily"
    write_jsonl(folder / "a.jsonl", rows[:250])
    # No chunk size: 1,000 requests a minute over 4 chunks in flight make it 100 rows.
    execution = {"rows_per_chunk": "auto", "requests_per_minute": 1000, "max_concurrency": 64}
    config = make_job(
        input_path=str(folder / "*.jsonl"), execution={**execution, "chunks_in_flight": 4}
    )
    first, summary, _ = run(config, answer)
    assert summary.complete
    assert (first.chunk_size.rows, first.chunk_size.automatic) == (100, True)
    assert [c.rows for c in first.chunks] == [100, 100, 50]

    write_jsonl(folder / "b.jsonl", rows[250:])  # the glob gains a file
    grown = prepare_job(config)
    assert grown.chunk_size == first.chunk_size
    assert grown.chunks[:3] == first.chunks  # the first file's chunks keep their ids
    assert [(c.source_index, c.rows) for c in grown.pending()] == [(1, 100)] * 4
    job, summary, completer = run(config, answer)
    assert summary.complete and len(completer.requests) == 400
    assert read_dataset(job.store.url).num_rows == 650


def test_a_new_automatic_chunk_size_recommits_without_asking_again(
    make_job: JobFactory,
) -> None:
    # Limits that change the automatic size (100 rows, then 200) re-chunk a committed output:
    # pending again, re-committed from the results it has, nothing sent.
    execution = {"rows_per_chunk": "auto", "max_concurrency": 64, "chunks_in_flight": 4}
    config = make_job(review_rows(250), execution={**execution, "requests_per_minute": 1000})
    first, summary, _ = run(config, answer)
    assert summary.complete and len(first.chunks) == 3
    faster = ["execution.requests_per_minute=2000"]
    # The last 50 rows are the same slice either way: that chunk stays committed.
    assert [c.rows for c in prepare_job(config, faster).pending()] == [200]
    completer = FakeCompleter(answer)
    job, summary = run_config(config, faster, completer=completer)
    assert summary.complete and completer.requests == []
    assert len(job.chunks) == 2 and job.pending() == []
    assert read_dataset(job.store.url).num_rows == 250


def test_a_permanent_error_is_an_error_row_and_is_not_retried(make_job: JobFactory) -> None:
    rows = review_rows(10)

    def handler(request: CompletionRequest) -> Completion | CompletionError:
        if "number 4:" in user_text(request):
            return CompletionError("HTTP 400: prompt rejected", status=400)
        return answer(request)

    job, summary, completer = run(make_job(rows), handler)
    assert summary.complete
    assert len(completer.requests) == 10
    table = read_dataset(job.store.url)
    assert table.num_rows == 10
    statuses = by_row(table, "status")
    assert statuses.pop("r-00004") == "error"
    assert set(statuses.values()) == {"ok"}
    assert by_row(table, "error_kind")["r-00004"] == "http_400"
    assert by_row(table, "error")["r-00004"] == "HTTP 400: prompt rejected"
    assert (summary.ok, summary.failed) == (9, 1)


def test_a_transient_failure_after_every_retry_leaves_its_chunk_pending(
    make_job: JobFactory,
) -> None:
    rows = review_rows(14)  # two chunks of seven

    def handler(request: CompletionRequest) -> Completion | CompletionError:
        if "number 9:" in user_text(request):
            return CompletionError("HTTP 503: overloaded", status=503)
        return answer(request)

    job, summary, completer = run(make_job(rows), handler)
    assert not summary.complete
    assert summary.pending == 1
    assert summary.chunks_committed == 1  # the other chunk is committed
    failing = [r for r in completer.requests if "number 9:" in user_text(r)]
    assert len(failing) == 3  # execution.retry.attempts
    assert summary.errors["http_503"][0] == 1
    assert not job.store.exists("_SUCCESS")


def test_a_rerun_sends_only_what_the_journal_does_not_have(make_job: JobFactory) -> None:
    rows = review_rows(14)
    config = make_job(rows)
    fail_once = {"on": True}

    def flaky(request: CompletionRequest) -> Completion | CompletionError:
        if fail_once["on"] and "number 9:" in user_text(request):
            return CompletionError("connection reset", code="connection")
        return answer(request)

    _, first, _ = run(config, flaky)
    assert first.pending == 1
    fail_once["on"] = False
    job, second, completer = run(config, flaky)
    assert second.complete
    # The committed chunk is not run again; the pending chunk's six journaled results are
    # reused: only the row that failed is asked for.
    assert [user_text(r) for r in completer.requests] == [
        "Rating 5: Review number 9: the product did poorly."
    ]
    assert read_dataset(job.store.url).num_rows == 14


def test_chunks_in_flight_share_one_request(make_job: JobFactory) -> None:
    """A request another chunk has in flight is waited for, not sent again, and not paid twice."""
    rows = review_rows(14)
    rows[7] = {**rows[0], "review_id": "r-late"}  # the second chunk's first row repeats row 0
    config = make_job(rows, execution={"dedupe_window": 0})  # no recent window: only in flight
    job = prepare_job(config)
    release = asyncio.Event()

    async def slow_first(request: CompletionRequest) -> Completion:
        if "number 0:" in user_text(request):
            await release.wait()
        return answer(request)

    completer = FakeCompleter(slow_first)

    async def both_chunks() -> list[ChunkSummary]:
        controller = RateController(
            max_in_flight=16, requests_per_minute=None, tokens_per_minute=None
        )
        engine = Engine(job, completer, controller)
        tables = list(job.iter_tables(job.chunks))
        running = [asyncio.ensure_future(engine.run_chunk(c, t)) for c, t in tables]
        # Every distinct request is out, row 0's held in flight: whichever chunk came second
        # to it is waiting for it.
        await eventually(lambda: len(completer.requests) == 13)
        release.set()
        return await asyncio.gather(*running)

    summaries = asyncio.run(both_chunks())
    assert len(completer.requests) == 13
    assert sorted((s.requests, s.reused, s.ok) for s in summaries) == [(6, 1, 7), (7, 0, 7)]
    paid = sum(count_prompt_tokens(r.messages) for r in completer.requests)
    assert sum(s.prompt_tokens for s in summaries) == paid


def test_the_observer_gets_the_runs_live_counters(make_job: JobFactory) -> None:
    observed: list[RunProgress] = []
    _, summary, completer = run(make_job(review_rows(10)), answer, observer=observed.append)
    assert summary.complete
    [progress] = observed
    assert (progress.rows_total, progress.rows_done) == (10, 10)
    assert progress.requests == len(completer.requests) == 10
