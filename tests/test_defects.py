"""Regression tests for smaller defects: each test failed before its fix.

* a renamed ``output.completion_column`` reuses the journaled results on a rerun;
* a nested value renders the same prompt (JSON) from Parquet and from JSONL;
* the token and cost columns of a committed dataset sum to what was paid for it;
* SIGHUP never ends an ``enrich run`` process, outside the engine's life too;
* a malformed ``--storage-option`` is a one-line error;
* every failing chunk is logged, and their count is reported.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import (
    JobFactory,
    answer,
    by_row,
    prepare_job,
    review_rows,
    run_config,
    run_enrich,
    write_jsonl,
)

from enrich.completer import FakeCompleter
from enrich.output.reader import read_dataset
from enrich.planning import ChunkSpec
from enrich.results import Result, results_from_table, results_table
from enrich.run import drive
from enrich.summary import ChunkSummary
from enrich.tokens import count_prompt_tokens
from enrich.usage import Usage

# -- b. nested values render as JSON whatever the input format --------------------------------

NESTED = [
    {"review_id": "r-0", "meta": {"lang": "en", "tags": ["a", "b"], "score": 1.5}, "n": [1, 2]},
    {"review_id": "r-1", "meta": {"lang": "fr", "tags": [], "score": 0.0}, "n": [3]},
]


def test_a_nested_value_renders_the_same_json_from_parquet_and_jsonl(
    make_job: JobFactory, tmp_path: Path
) -> None:
    jsonl = write_jsonl(tmp_path / "in" / "nested.jsonl", NESTED)
    parquet = tmp_path / "in" / "nested.parquet"
    pq.write_table(pa.Table.from_pylist(NESTED), parquet)
    prompts = {}
    for source, fmt in ((jsonl, "jsonl"), (parquet, "parquet")):
        config = make_job(
            input={"path": str(source), "format": fmt},
            prompt={"system": "Describe.", "template": "meta={meta} n={n}"},
        )
        job = prepare_job(config)
        (chunk, table), *_ = job.iter_tables(job.chunks)
        prompts[fmt] = [m[-1]["content"] for m in job.render(chunk, table)[2]]
    assert prompts["parquet"] == prompts["jsonl"]
    assert prompts["parquet"][0] == 'meta={"lang":"en","tags":["a","b"],"score":1.5} n=[1,2]'


# -- d. SIGHUP outside the engine's life ------------------------------------------------------

# ``enrich run --direct`` with its run wrapped so the process signals itself just before the
# run starts (no engine yet) and just after it returned (the engine closed); the completer is
# a FakeCompleter so that nothing else is needed.
SIGHUP_RUN = """
import os, signal
import enrich.run
from enrich.cli import app
from enrich.completer import FakeCompleter
from support import answer

real_run_job = enrich.run.run_job


async def run_job(job, **options):
    os.kill(os.getpid(), signal.SIGHUP)
    summary = await real_run_job(job, completer=FakeCompleter(answer), **options)
    os.kill(os.getpid(), signal.SIGHUP)
    return summary


enrich.run.run_job = run_job
app(["run", "--direct", {config!r}])
"""


def test_sighup_before_and_after_the_engine_does_not_end_the_run(make_job: JobFactory) -> None:
    config = make_job(review_rows(9))
    tests = str(Path(__file__).parent)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SIGHUP_RUN.format(config=str(config)))],
        capture_output=True,
        text=True,
        timeout=300,  # bounds a hang only
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]),
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("nothing to reload") == 2, result.stderr
    assert "committed 9 rows" in result.stderr


# -- e. a malformed --storage-option ----------------------------------------------------------


@pytest.mark.parametrize("option", ["foo", "=bar"])
def test_a_malformed_storage_option_is_a_one_line_error(option: str, tmp_path: Path) -> None:
    result = run_enrich("status", str(tmp_path / "out"), "--storage-option", option)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"--storage-option {option!r}" in lines[0] and "KEY=VALUE" in lines[0]
    assert "Traceback" not in result.stderr


# -- f. several chunks fail -------------------------------------------------------------------


def test_every_failing_chunk_is_logged_and_counted(
    make_job: JobFactory, caplog: pytest.LogCaptureFixture
) -> None:
    job = prepare_job(make_job(review_rows(21)))  # three chunks of 7
    assert len(job.chunks) == 3
    failing = {job.chunks[0].chunk_id, job.chunks[2].chunk_id}

    async def run_chunk(chunk: ChunkSpec, table: Any) -> ChunkSummary:
        await asyncio.sleep(0)
        if chunk.chunk_id in failing:
            raise RuntimeError(f"storage down for {chunk.label}\nsecond line")
        return ChunkSummary(chunk_id=chunk.chunk_id, label=chunk.label, rows=chunk.rows)

    with caplog.at_level(logging.ERROR, logger="enrich.run"), pytest.raises(RuntimeError) as raised:
        asyncio.run(drive(job, job.chunks, run_chunk, chunks_in_flight=3))
    logged = [r.getMessage() for r in caplog.records]
    for chunk in (job.chunks[0], job.chunks[2]):
        assert f"chunk {chunk.label} failed: RuntimeError: storage down for {chunk.label}" in logged
    assert not any("second line" in line for line in logged)
    assert any(line.startswith("2 of 3 chunks failed") for line in logged)
    assert any(note.startswith("2 of 3 chunks failed") for note in raised.value.__notes__)


# -- a. a renamed output.completion_column ----------------------------------------------------


def test_renaming_the_completion_column_reuses_every_result(make_job: JobFactory) -> None:
    config = make_job(review_rows(14))
    first = FakeCompleter(answer)
    job, summary = run_config(config, completer=first)
    assert summary.complete and len(first.requests) == 14
    before = by_row(read_dataset(job.store.url), "completion")

    again = FakeCompleter(answer)
    job, summary = run_config(config, ["output.completion_column=label"], completer=again)
    assert summary.complete, summary.message
    assert again.requests == []
    table = read_dataset(job.store.url)
    assert "completion" not in table.column_names
    assert by_row(table, "label") == before
    assert sum(table.column("prompt_tokens").to_pylist()) == sum(
        count_prompt_tokens(r.messages) for r in first.requests
    )


# -- c. token and cost columns sum to what was paid ----------------------------------------


def test_a_recommitted_dataset_still_sums_to_what_was_paid(make_job: JobFactory) -> None:
    # Rows 3-5 repeat rows 0-2 in the same chunk (7 rows a chunk): one request each, paid once.
    rows = review_rows(14, duplicates=3)
    rows = [rows[i] for i in (0, 1, 2, 11, 12, 13, 3, 4, 5, 6, 7, 8, 9, 10)]
    config = make_job(rows)
    completer = FakeCompleter(answer)
    job, summary = run_config(config, completer=completer)
    assert summary.complete and len(completer.requests) == 11
    paid = sum(count_prompt_tokens(r.messages) for r in completer.requests)
    first = read_dataset(job.store.url)
    cost = sum(first.column("cost_usd").to_pylist())

    # A change of the job's identity that asks nothing again: every chunk is committed anew
    # from the results its slot already has.
    for change in ("output.format=jsonl", "output.completion_column=label"):
        again = FakeCompleter(answer)
        job, summary = run_config(config, [change], completer=again)
        assert summary.complete and again.requests == []
        table = read_dataset(job.store.url)
        assert sum(table.column("prompt_tokens").to_pylist()) == paid
        assert sum(table.column("completion_tokens").to_pylist()) == 3 * 11
        assert sum(table.column("cost_usd").to_pylist()) == pytest.approx(cost)


def test_a_part_read_back_keeps_the_copy_that_carried_the_cost() -> None:
    paid = Result("yes", usage=Usage(prompt_tokens=20, completion_tokens=3), attempts=1)
    paid.cost_usd = 0.5
    part = results_table(["h1", "h2", "h1"], [paid, paid, paid.shared()])
    known = results_from_table(part)
    assert known["h1"] == paid and known["h2"] == paid
