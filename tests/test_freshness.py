"""Which partitions are committed is read from manifests and listings, never from the data.

The pure part first (how a listing differs from what a manifest recorded of its input), then
a schedule's view of many committed partitions through a filesystem that counts reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections import Counter
from pathlib import Path

import orjson
import pytest
from support import JobFactory, answer, review_rows, write_jsonl

from enrich.completer import FakeCompleter
from enrich.config import JobConfig, load_job_config
from enrich.freshness import current_manifest
from enrich.inputs import SourceFile
from enrich.job import Job
from enrich.output.layout import LAYOUT
from enrich.output.provenance import InputFileRecord, InputRecord
from enrich.output.records import DatasetTotals, Manifest, UnreadableRecord
from enrich.partitions import for_partition, list_partitions, partition_state, pending
from enrich.run import run_job
from enrich.storage import Pin, Store

# -- the record and a listing (pure) ----------------------------------------------------------


def listed(key: str, size: int = 100, tag: str = "e1", version: str = "v1") -> SourceFile:
    """A file as a listing gives it: pinned, its rows not counted."""
    return SourceFile(
        f"s3://raw/{key}", key, "jsonl", size, version, 0, None, Pin(size, "ETag", tag)
    )


RECORD = InputRecord(
    columns=("review_id", "rating", "text"),
    files=(
        InputFileRecord("a.jsonl", "jsonl", None, "v1", 10, Pin(100, "ETag", "e1")),
        InputFileRecord("b.jsonl", "jsonl", None, "v1", 20, Pin(100, "ETag", "e1")),
    ),
)


@pytest.mark.parametrize(
    ("now", "change"),
    [
        ([listed("a.jsonl"), listed("b.jsonl")], None),
        ([listed("b.jsonl"), listed("a.jsonl")], None),  # the order of a listing is no change
        ([listed("a.jsonl"), listed("b.jsonl"), listed("c.jsonl")], "c.jsonl: a new file"),
        ([listed("a.jsonl")], "b.jsonl: gone"),
        ([listed("a.jsonl"), listed("b.jsonl", size=120)], "b.jsonl: size 100 -> 120"),
        ([listed("a.jsonl", tag="e2"), listed("b.jsonl")], "a.jsonl: ETag e1 -> e2"),
        ([listed("a.jsonl"), listed("b.jsonl", version="v2")], "b.jsonl: version v1 -> v2"),
        (
            [dataclasses.replace(listed("a.jsonl"), format="parquet"), listed("b.jsonl")],
            "a.jsonl: read as parquet, was jsonl",
        ),
        (
            [dataclasses.replace(listed("a.jsonl"), pin=None), listed("b.jsonl")],
            "a.jsonl: not pinned",
        ),
    ],
)
def test_how_a_listing_differs_from_the_recorded_input(
    now: list[SourceFile], change: str | None
) -> None:
    assert RECORD.change(now) == change


def test_the_listed_files_get_their_recorded_rows() -> None:
    sources = RECORD.sources([listed("a.jsonl"), listed("b.jsonl")])
    assert [(s.url, s.num_rows) for s in sources] == [
        ("s3://raw/a.jsonl", 10),
        ("s3://raw/b.jsonl", 20),
    ]


def test_a_record_needs_every_file_pinned() -> None:
    unpinned = dataclasses.replace(listed("a.jsonl"), pin=None)
    assert InputRecord.of([listed("a.jsonl"), unpinned], ["x"]) is None
    assert InputRecord.of([listed("a.jsonl")], ["x"]) == InputRecord(
        ("x",), (InputFileRecord("a.jsonl", "jsonl", None, "v1", 0, Pin(100, "ETag", "e1")),)
    )


def manifest(inputs: InputRecord | None) -> Manifest:
    return Manifest("j", "fp", "parquet", (), DatasetTotals(), 1.0, None, 1, inputs)


def test_the_manifest_carries_its_input_and_older_manifests_read_without() -> None:
    with_inputs = manifest(RECORD)
    assert Manifest.from_bytes(with_inputs.to_bytes(), "m") == with_inputs
    assert with_inputs.to_dict()["format_version"] == 1  # an older install still reads it
    without = orjson.loads(manifest(None).to_bytes())
    assert "inputs" not in without
    assert Manifest.from_bytes(orjson.dumps(without), "m").inputs is None


@pytest.mark.parametrize(
    "inputs",
    [
        [],
        {"columns": "a", "files": []},
        {"columns": [], "files": [{"key": "a"}]},
        {"columns": [], "files": [{**RECORD.files[0].to_dict(), "format": "csv"}]},
    ],
)
def test_a_broken_input_record_is_an_unreadable_manifest(inputs: object) -> None:
    raw = {**manifest(None).to_dict(), "inputs": inputs}
    with pytest.raises(UnreadableRecord, match=r"out/_manifest\.json"):
        Manifest.from_bytes(orjson.dumps(raw), "out/_manifest.json")


# -- many partitions, counted -----------------------------------------------------------------

DAYS = [f"2026-10-{d:02d}" for d in range(1, 31)]


def daily_input(root: Path) -> str:
    """Two small JSONL files per day for 30 days; returns the ``counted://`` input template."""
    for n, day in enumerate(DAYS):
        for part in range(2):
            rows = [
                {**r, "review_id": f"{day}-{part}-{r['review_id']}"}
                for r in review_rows(3 + (n + part) % 4)
            ]
            write_jsonl(root / f"dt={day}" / f"part-{part}.jsonl", rows)
    return f"counted://{root}/dt={{date}}/*.jsonl"


def run_partition(config: JobConfig, day: str) -> None:
    cfg = for_partition(config, day)
    summary = asyncio.run(run_job(Job.prepare(cfg, where=day), completer=FakeCompleter(answer)))
    assert summary.complete, summary.message


def input_reads(counted: Counter[str], root: Path) -> int:
    return sum(n for path, n in counted.items() if path.startswith(str(root)))


def test_the_schedule_reads_no_input_byte_of_a_committed_partition(
    make_job: JobFactory, tmp_path: Path, counted_reads: Counter[str]
) -> None:
    raw = tmp_path / "raw"
    path = make_job(input_path=daily_input(raw), output_path=str(tmp_path / "out"))
    config = load_job_config(path)
    for day in DAYS:
        run_partition(config, day)
    assert input_reads(counted_reads, raw) > 0  # the runs read it: the counter counts

    counted_reads.clear()
    states = [partition_state(config, d) for d in list_partitions(config)]
    assert [s.partition for s in states] == DAYS and pending(states) == []
    assert input_reads(counted_reads, raw) == 0

    # A late file, a rewritten file: those days are pending, still without reading a byte.
    write_jsonl(raw / f"dt={DAYS[3]}" / "part-2.jsonl", review_rows(2))
    rewritten = raw / f"dt={DAYS[7]}" / "part-1.jsonl"
    rewritten.write_bytes(
        rewritten.read_bytes() + b'{"review_id": "x", "rating": 1, "text": "t"}\n'
    )
    counted_reads.clear()
    states = [partition_state(config, d) for d in list_partitions(config)]
    assert pending(states) == [DAYS[3], DAYS[7]]
    assert input_reads(counted_reads, raw) == 0

    # Another chunk size is another set of chunks, and another prompt another fingerprint.
    for override in ("execution.rows_per_chunk=2", "prompt.system=Label it in one word."):
        other = load_job_config(path, [override])
        assert partition_state(other, DAYS[0]).committed is False
    assert input_reads(counted_reads, raw) == 0


def test_a_manifest_that_recorded_no_input_is_checked_by_surveying_it(
    make_job: JobFactory, tmp_path: Path, counted_reads: Counter[str]
) -> None:
    # A dataset committed before inputs were recorded: still judged right, the old way.
    raw = tmp_path / "raw"
    path = make_job(input_path=daily_input(raw), output_path=str(tmp_path / "out"))
    config = load_job_config(path)
    run_partition(config, DAYS[0])
    store = Store(for_partition(config, DAYS[0]).output.path)
    old = orjson.loads(store.read_bytes(LAYOUT.manifest))
    assert old["inputs"]["files"][0]["key"] == "part-0.jsonl"
    del old["inputs"]
    store.write_bytes(LAYOUT.manifest, orjson.dumps(old))

    counted_reads.clear()
    assert partition_state(config, DAYS[0]).committed
    assert input_reads(counted_reads, raw) > 0
    assert current_manifest(for_partition(config, DAYS[1])) is None  # nothing committed there


def test_the_recorded_input_is_the_surveyed_one(make_job: JobFactory, tmp_path: Path) -> None:
    # Rebuilt from the record, the job has the prepared job's fingerprint and chunks.
    source = write_jsonl(tmp_path / "in" / "reviews.jsonl", review_rows(20))
    config = load_job_config(make_job(input_path=str(source)))
    job = Job.prepare(config)
    asyncio.run(run_job(job, completer=FakeCompleter(answer)))
    found = current_manifest(config)
    assert found is not None and found.inputs is not None
    assert found.inputs.columns == ("review_id", "rating", "text")
    (only,) = found.inputs.files
    assert (only.key, only.rows, only.pin.size) == ("reviews.jsonl", 20, os.path.getsize(source))
    assert found.chunk_ids == frozenset(c.chunk_id for c in job.chunks)
