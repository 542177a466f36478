"""A paid result is journaled before anything can discard it, even while storage is down.

The output's store refuses writes under some folders for a while (a real Store whose writes
fail, injected into the job): journal writes are retried with backoff; what still cannot be
written when the chunk ends is kept on local disk and uploaded by the next run, which then
asks nothing again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from support import JobFactory, answer, prepare_job, review_rows

from enrich.completer import FakeCompleter
from enrich.errors import StorageError
from enrich.job import Job
from enrich.output.layout import LAYOUT
from enrich.output.reader import read_dataset
from enrich.run import run_job
from enrich.storage import Store
from enrich.summary import JobSummary
from enrich.tokens import count_prompt_tokens


class Outage(Store):
    """The job's output store, with the writes that ``refuses(key)`` names failing."""

    def __init__(self, store: Store, refuses: Callable[[str], bool]) -> None:
        super().__init__(store.url)
        self.refuses = refuses
        self.refused = 0

    def write_bytes(self, key: str, data: bytes) -> None:
        if self.refuses(key):
            self.refused += 1
            raise StorageError(f"{self.url_of(key)}: service unavailable (503)")
        super().write_bytes(key, data)


def run(job: Job, completer: FakeCompleter) -> JobSummary:
    return asyncio.run(run_job(job, completer=completer))


def test_results_storage_would_not_take_are_kept_locally_and_reused(
    make_job: JobFactory, spill_dir: Path
) -> None:
    config = make_job(review_rows(14))  # two chunks of seven, both in flight
    job = prepare_job(config)
    down = Outage(job.store, lambda key: key.startswith((LAYOUT.journal, LAYOUT.parts)))
    job.store = down
    first = FakeCompleter(answer)
    with pytest.raises(StorageError, match="service unavailable"):
        run(job, first)
    assert len(first.requests) == 14
    assert down.refused > 0 and down.keys(LAYOUT.journal) == []
    assert list(spill_dir.rglob("*.arrow")), "the paid results were kept on local disk"

    # Storage is back: the next run uploads them and asks for nothing.
    job = prepare_job(config)
    again = FakeCompleter(answer)
    summary = run(job, again)
    assert summary.complete, summary.message
    assert again.requests == []
    assert list(spill_dir.rglob("*.arrow")) == []
    table = read_dataset(job.store.url)
    assert table.num_rows == 14
    paid = sum(count_prompt_tokens(r.messages) for r in first.requests)
    assert sum(table.column("prompt_tokens").to_pylist()) == paid


def test_a_journal_write_that_fails_for_a_while_is_retried(
    make_job: JobFactory, spill_dir: Path
) -> None:
    # One journal write per chunk, when it ends; the first two attempts fail.
    execution = {"journal_rows": 1000, "journal_interval_s": 3600}
    job = prepare_job(make_job(review_rows(14), execution=execution))
    failures = {"left": 2}

    def refuses(key: str) -> bool:
        if key.startswith(LAYOUT.journal) and failures["left"]:
            failures["left"] -= 1
            return True
        return False

    job.store = flaky = Outage(job.store, refuses)
    completer = FakeCompleter(answer)
    summary = run(job, completer)
    assert summary.complete, summary.message
    assert flaky.refused == 2
    assert len(completer.requests) == 14
    assert list(spill_dir.rglob("*.arrow")) == []
