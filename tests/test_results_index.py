"""Results belong to requests, not to chunk boundaries.

* a committed job run again under another ``rows_per_chunk`` sends nothing and is committed
  anew with the new chunks; the old parts are collected;
* rows prepended and appended to a JSONL input: only the new rows are sent;
* a new input file whose rows repeat committed ones sends nothing, and its rows carry no cost
  (the committed part that stays pays for them);
* in every case the token and cost columns add up to what was served, each request once;
* two chunks that look up the index before either selects send a shared request once;
* a journal entry of the earlier per-slot layout is still read.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
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

from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.engine import Engine
from enrich.output.index import Found, ResultIndex
from enrich.output.journal import ipc_bytes
from enrich.output.layout import LAYOUT
from enrich.output.reader import read_dataset, read_manifest
from enrich.output.scan import IndexArrays
from enrich.ratelimit import RateController
from enrich.results import Result, encode, results_table
from enrich.storage import Store
from enrich.summary import ChunkSummary
from enrich.tokens import count_prompt_tokens
from enrich.usage import Usage


def served_tokens(*completers: FakeCompleter) -> tuple[int, int]:
    """Prompt and completion tokens of every request the completers answered."""
    requests = [r for c in completers for r in c.requests]
    return sum(count_prompt_tokens(r.messages) for r in requests), 3 * len(requests)


def dataset_tokens(url: str) -> tuple[int, int]:
    table = read_dataset(url)
    return (
        sum(table.column("prompt_tokens").to_pylist()),
        sum(table.column("completion_tokens").to_pylist()),
    )


def test_a_new_chunking_sends_nothing_and_recommits_every_row(make_job: JobFactory) -> None:
    # Rows 24-29 repeat rows 0-5, in other chunks under either chunking.
    config = make_job(review_rows(30, duplicates=6))
    first = FakeCompleter(answer)
    job, summary = run_config(config, completer=first)
    assert summary.complete and len(first.requests) == 24
    before = read_dataset(job.store.url)
    old_parts = set(job.store.keys(LAYOUT.parts))

    again = FakeCompleter(answer)
    job, summary = run_config(config, ["execution.rows_per_chunk=5"], completer=again)
    assert summary.complete, summary.message
    assert again.requests == []
    after = read_dataset(job.store.url)
    for column in ("completion", "status", "request_hash"):
        assert by_row(after, column) == by_row(before, column)
    manifest = read_manifest(job.store.url)
    assert len(manifest.parts) == 6 and {p.chunk_id for p in manifest.parts} == {
        c.chunk_id for c in job.chunks
    }
    # Only what the new manifest names is left: the old chunking's parts and every journal
    # entry are collected.
    assert set(job.store.keys(LAYOUT.parts)) == {p.path for p in manifest.parts}
    assert not set(job.store.keys(LAYOUT.parts)) & old_parts
    assert job.store.keys(LAYOUT.journal) == []
    # Each request's cost is carried once, by one of its rows.
    assert dataset_tokens(job.store.url) == served_tokens(first)
    assert sum(after.column("cost_usd").to_pylist()) == pytest.approx(
        sum(before.column("cost_usd").to_pylist())
    )


def test_rows_added_before_and_after_the_old_ones_are_the_only_ones_sent(
    make_job: JobFactory, tmp_path: Path
) -> None:
    rows = review_rows(27)
    old, new = rows[:20], rows[20:]
    source = write_jsonl(tmp_path / "in" / "reviews.jsonl", old)
    config = make_job(input_path=str(source))
    first = FakeCompleter(answer)
    job, summary = run_config(config, completer=first)
    assert summary.complete
    before = by_row(read_dataset(job.store.url), "completion")

    write_jsonl(source, new[:3] + old + new[3:])  # every old row moves by three
    again = FakeCompleter(answer)
    job, summary = run_config(config, completer=again)
    assert summary.complete, summary.message
    assert sorted(map(user_text, again.requests)) == sorted(
        f"Rating {r['rating']}: {r['text']}" for r in new
    )
    after = by_row(read_dataset(job.store.url), "completion")
    assert len(after) == 27
    assert {k: after[k] for k in before} == before
    assert dataset_tokens(job.store.url) == served_tokens(first, again)


def test_a_new_file_repeating_committed_rows_sends_nothing_and_pays_nothing(
    make_job: JobFactory, tmp_path: Path
) -> None:
    rows = review_rows(14)
    write_jsonl(tmp_path / "many" / "a.jsonl", rows[:7])
    write_jsonl(tmp_path / "many" / "b.jsonl", rows[7:])
    config = make_job(input_path=str(tmp_path / "many" / "*.jsonl"))
    first = FakeCompleter(answer)
    job, summary = run_config(config, completer=first)
    assert summary.complete and len(first.requests) == 14

    repeats = [{**r, "review_id": f"again-{r['review_id']}"} for r in rows[:7]]
    write_jsonl(tmp_path / "many" / "c.jsonl", repeats)
    again = FakeCompleter(answer)
    job, summary = run_config(config, completer=again)
    assert summary.complete, summary.message
    assert again.requests == []
    table = read_dataset(job.store.url)
    costs = by_row(table, "cost_usd")
    assert all(costs[r["review_id"]] == 0 for r in repeats)
    assert all(costs[r["review_id"]] > 0 for r in rows)
    assert dataset_tokens(job.store.url) == served_tokens(first)


def test_a_journal_entry_of_the_per_slot_layout_is_still_read(make_job: JobFactory) -> None:
    config = make_job(review_rows(7))
    job = prepare_job(config)
    (chunk, table), *_ = job.iter_tables(job.chunks)
    _, hashes, messages = job.render(chunk, table)
    paid = [_result(answer(CompletionRequest(job.config.model, m))) for m in messages[:4]]
    key = f"{LAYOUT.journal}/{chunk.slot_id}/{chunk.chunk_id}-0123456789ab.arrow"
    job.store.write_bytes(key, ipc_bytes(results_table(hashes[:4], paid)))

    completer = FakeCompleter(answer)
    job, summary = run_config(config, completer=completer)
    assert summary.complete
    assert len(completer.requests) == 3
    assert job.store.keys(LAYOUT.journal) == []


def _result(completion: Completion) -> Any:
    return Result(
        completion.content,
        finish_reason=completion.finish_reason,
        usage=completion.usage,
        model=completion.model,
        attempts=1,
    )


class GatedIndex(ResultIndex):
    """An empty index whose lookups return only once two chunks have both looked up."""

    def __init__(self) -> None:
        super().__init__(None, IndexArrays([], b"", array("i"), array("i"), bytearray()))
        self.gate = threading.Barrier(2, timeout=60)

    def lookup(self, hashes: Iterable[str]) -> Found:
        self.gate.wait()
        return super().lookup(hashes)


def test_two_chunks_that_look_up_before_either_selects_send_a_shared_request_once(
    make_job: JobFactory,
) -> None:
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
        engine = Engine(job, completer, controller, index=GatedIndex())
        tables = list(job.iter_tables(job.chunks))
        running = [asyncio.ensure_future(engine.run_chunk(c, t)) for c, t in tables]
        await eventually(lambda: len(completer.requests) == 13)
        release.set()
        return await asyncio.gather(*running)

    summaries = asyncio.run(both_chunks())
    assert len(completer.requests) == 13
    assert sorted((s.requests, s.reused, s.ok) for s in summaries) == [(6, 1, 7), (7, 0, 7)]
    paid = sum(count_prompt_tokens(r.messages) for r in completer.requests)
    assert sum(s.prompt_tokens for s in summaries) == paid


# -- the index itself ---------------------------------------------------------------------------


def _hash(name: str) -> str:
    return name * 32


def _paid(text: str, kind: str | None = None) -> Result:
    usage = Usage(prompt_tokens=10, completion_tokens=2)
    if kind is None:
        return Result(text, usage=usage, attempts=1, cost_usd=1.0)
    return Result(None, attempts=1, status="error", error=kind, error_kind=kind)


def _index(retry_errors: bool = False) -> ResultIndex:
    store = Store(f"memory://index-{uuid.uuid4().hex[:8]}")
    a, b, c, e, t = (_hash(x) for x in "abcef")
    kept = results_table([a, b], [_paid("a in kept"), _paid("b in kept").shared()])
    old = results_table(
        [b, a, e, t],
        [_paid("b in old"), _paid("a in old"), _paid("", "http_400"), _paid("", "http_503")],
    )
    store.write_bytes(LAYOUT.part("s1", "s1-kept", "parquet"), encode(kept, "parquet"))
    store.write_bytes(LAYOUT.part("s2", "s2-old", "jsonl"), encode(old, "jsonl"))
    entry = ipc_bytes(results_table([c], [_paid("c")]))
    store.write_bytes(LAYOUT.journal_entry("s3-x", "n1"), entry)
    return ResultIndex.build(
        store, completion_column="completion", keep={"s1-kept"}, retry_errors=retry_errors
    )


def test_the_index_keeps_the_best_copy_and_the_first_claim_pays() -> None:
    index = _index()
    a, b, c, e, t = (_hash(x) for x in "abcef")
    assert sorted(index) == sorted([a, b, c, e])  # a 503 is asked again
    found = index.lookup([a, b, c, e, t, _hash("9")])
    completions = {h: r.completion for h, r in found.results.items()}
    # a: the paying copy in the part that stays; b: the paying copy, not the kept part's share.
    assert completions == {a: "a in kept", b: "b in old", c: "c", e: None}
    assert found.results[b].usage.prompt_tokens == 10
    # a is paid for by the kept part; the first claim of the others pays, the next shares.
    assert index.claim(found) == {b, c, e}
    assert index.claim(index.lookup([a, b, c, e])) == set()


def test_with_retry_errors_the_index_has_no_error_rows() -> None:
    assert sorted(_index(retry_errors=True)) == sorted(_hash(x) for x in "abc")
