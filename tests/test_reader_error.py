"""An input that fails mid-run stops the run the way a failing chunk does.

No new chunk starts; the chunks already running finish the requests they sent (paid for) and
commit; then the reader's error is raised. A rerun once the input is fixed sends only the rows
that were never sent.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import JobFactory, answer, eventually, prepare_job, review_rows, run_config, user_text

from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.errors import InputError
from enrich.output.reader import output_status, read_dataset
from enrich.planning import ChunkSpec
from enrich.run import run_job


def parquet(rows: list[dict[str, Any]], row_group_size: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink, row_group_size=row_group_size)
    return sink.getvalue()


def row_number(request: CompletionRequest) -> int:
    return int(user_text(request).split("number ")[1].split(":")[0])


def test_a_reader_error_lets_the_running_chunks_finish_and_commit(
    make_job: JobFactory, tmp_path: Path
) -> None:
    rows = review_rows(60)
    good = parquet(rows, row_group_size=20)
    meta = pq.ParquetFile(io.BytesIO(good)).metadata
    # The text column: the id column (0) is read while the input is surveyed, the text only
    # when its chunk runs.
    start = meta.row_group(2).column(2).data_page_offset
    source = tmp_path / "in" / "reviews.parquet"
    source.parent.mkdir(parents=True)
    source.write_bytes(good[:start] + b"\xde\xad" * 40 + good[start + 80 :])
    # Chunks of 7 rows, 3 at once: chunks 0-2 finish, chunks 3 and 4 (rows 21-34) are held
    # in flight while the reader reaches chunk 5 (rows 35-41), which needs row group 2.
    config = make_job(input_path=str(source))
    job = prepare_job(config)
    reader_failed = threading.Event()
    real_iter_tables = job.iter_tables

    def iter_tables(chunks: Sequence[ChunkSpec]) -> Iterator[tuple[ChunkSpec, pa.Table]]:
        try:
            yield from real_iter_tables(chunks)
        except InputError:
            reader_failed.set()
            raise

    job.iter_tables = iter_tables  # type: ignore[method-assign]
    answered: list[int] = []

    async def held(request: CompletionRequest) -> Completion:
        if row_number(request) >= 21:
            await eventually(reader_failed.is_set)
        answered.append(row_number(request))
        return answer(request)

    completer = FakeCompleter(held)
    with pytest.raises(InputError, match=r"reviews\.parquet: row group 2 unreadable"):
        asyncio.run(run_job(job, completer=completer))
    # Every request in flight when the reader failed was answered, none was cancelled, and
    # the two chunks that sent them are committed.
    assert sorted(answered) == list(range(35)) == sorted(map(row_number, completer.requests))
    status = output_status(job.store.url)
    assert not status.complete and status.committed_rows == 35

    source.write_bytes(good)
    again = FakeCompleter(answer)
    _, summary = run_config(config, completer=again)
    assert summary.complete
    assert sorted(map(row_number, again.requests)) == list(range(35, 60))
    assert read_dataset(job.store.url).num_rows == 60
