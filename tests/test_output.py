"""The output location's layout, records and committed rule, as pure functions (no IO)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from enrich.errors import EnrichError, StorageError
from enrich.output.committed import is_committed
from enrich.output.layout import LAYOUT, JournalKey, PartKey
from enrich.output.records import (
    CHUNK_RECORD_FORMAT,
    MANIFEST_FORMAT,
    PLAN_FORMAT,
    ChunkRecord,
    DatasetTotals,
    Manifest,
    ManifestPart,
    NewerFormat,
    Plan,
    PlannedChunk,
    UnreadableRecord,
)
from enrich.summary import ChunkSummary

WHERE = "s3://bucket/out/_record.json"

# -- keys -------------------------------------------------------------------------------------


Kind = PartKey | JournalKey | str | None  # a str is a chunk record's chunk id


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("parts/s1/s1-c1.parquet", PartKey("s1", "s1-c1", "parquet")),
        ("parts/s1/s1-c1.jsonl", PartKey("s1", "s1-c1", "jsonl")),
        ("parts/s1/s1-c1.csv", None),  # not a format we write
        ("parts/s1/s1-c1", None),
        ("parts/s1-c1.parquet", None),  # no slot
        ("parts/s1/x/s1-c1.parquet", None),
        ("partsx/s1/s1-c1.parquet", None),
        ("parts/s1/s1-c1.json", None),
        ("_chunks/s1-c1.json", "s1-c1"),
        ("_chunks/.json", None),
        ("_chunks/s1-c1.txt", None),
        ("_chunks/a/s1-c1.json", None),
        ("_chunks", None),
        ("_journal/s1-c1-0123456789ab.arrow", JournalKey("s1-c1", "0123456789ab")),
        ("_journal/c1-n.arrow", JournalKey("c1", "n")),
        ("_journal/c1.arrow", None),  # no nonce
        ("_journal/c1-n.parquet", None),
        ("_journal/s1/x/c1-n.arrow", None),
        # The earlier layout, one folder per slot: still read.
        ("_journal/s1/s1-c1-0123456789ab.arrow", JournalKey("s1-c1", "0123456789ab", "s1")),
        ("_journal/s1/c1.arrow", None),
        ("parts/s1/c1-n.arrow", None),
    ],
)
def test_a_key_parses_as_one_kind_at_most_and_builds_back(key: str, kind: Kind) -> None:
    """Each parser takes its own keys only; what it parses, its builder writes back."""
    parsed = (
        LAYOUT.parse_part(key),
        LAYOUT.parse_chunk_record(key),
        LAYOUT.parse_journal_entry(key),
    )
    assert parsed == (
        kind if isinstance(kind, PartKey) else None,
        kind if isinstance(kind, str) else None,
        kind if isinstance(kind, JournalKey) else None,
    )
    if isinstance(kind, PartKey):
        assert LAYOUT.part(kind.slot_id, kind.chunk_id, kind.fmt) == key
    elif isinstance(kind, str):
        assert LAYOUT.chunk_record(kind) == key
    elif isinstance(kind, JournalKey) and kind.slot_id is None:
        assert LAYOUT.journal_entry(kind.chunk_id, kind.nonce) == key


def test_the_file_names_are_those_on_disk() -> None:
    """Outputs written by earlier versions keep reading: the names never change silently."""
    names = (LAYOUT.plan, LAYOUT.lease, LAYOUT.manifest, LAYOUT.success)
    assert names == ("_plan.json", "_lease.json", "_manifest.json", "_SUCCESS")
    assert (LAYOUT.parts, LAYOUT.chunks, LAYOUT.journal) == ("parts", "_chunks", "_journal")


# -- records ----------------------------------------------------------------------------------

PLAN = Plan(
    job="reviews",
    fingerprint="fp",
    rows=25,
    format="parquet",
    chunks=(PlannedChunk("s1-c1", 10), PlannedChunk("s2-c2", 15)),
)
RECORD = ChunkRecord(
    chunk_id="s1-c1",
    label="chunk-000-000000000",
    part="parts/s1/s1-c1.parquet",
    rows=10,
    ok=9,
    failed=1,
    requests=10,
    attempts=11,
    prompt_tokens=400,
    completion_tokens=80,
    cost_usd=0.25,
    elapsed_s=1.5,
    latency={"60": 10},
    errors={"invalid_request": [1, "bad prompt"]},
)
MANIFEST = Manifest.of(
    [RECORD, ChunkRecord(chunk_id="s2-c2", label="b", part="parts/s2/s2-c2.parquet", rows=15)],
    job="reviews",
    fingerprint="fp",
    fmt="parquet",
    committed_at=1700000000.5,
)
RECORDS: list[Any] = [PLAN, RECORD, MANIFEST]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_records_round_trip(record: Any) -> None:
    data = record.to_bytes()
    assert orjson.loads(data)["format_version"] == 1
    assert type(record).from_bytes(data, WHERE) == record


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_newer_record_is_refused_in_one_line(record: Any) -> None:
    newest = {Plan: PLAN_FORMAT, ChunkRecord: CHUNK_RECORD_FORMAT, Manifest: MANIFEST_FORMAT}
    reads = newest[type(record)]
    data = orjson.dumps({**record.to_dict(), "format_version": 3})
    with pytest.raises(NewerFormat) as raised:
        type(record).from_bytes(data, WHERE)
    assert str(raised.value) == (
        f"{WHERE}: written by a newer cerebras-enrich (format 3, this one reads up to {reads}); "
        "upgrade"
    )
    assert isinstance(raised.value, EnrichError) and not isinstance(raised.value, StorageError)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_record_written_before_versions_reads_as_version_1(record: Any) -> None:
    unversioned = {k: v for k, v in record.to_dict().items() if k != "format_version"}
    again = type(record).from_bytes(orjson.dumps(unversioned), WHERE)
    assert again == record and again.format_version == 1


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
@pytest.mark.parametrize(
    "data",
    [b"{not json", b"[1, 2]", b'{"format_version": 1}', b'{"format_version": "one"}'],
)
def test_what_is_not_a_record_is_unreadable(record: Any, data: bytes) -> None:
    with pytest.raises(UnreadableRecord, match=f"^{WHERE}: ") as raised:
        type(record).from_bytes(data, WHERE)
    assert "\n" not in str(raised.value)


def test_the_manifest_keeps_its_shape_on_disk() -> None:
    """The same fields, in the same order, as before versions: readers of the JSON keep working."""
    data = orjson.loads(MANIFEST.to_bytes())
    assert list(data) == [
        "format_version",
        *("job", "fingerprint", "format", "committed_at", "rows", "parts", "totals"),
    ]
    assert data["rows"] == 25
    assert data["parts"] == [
        {"path": "parts/s1/s1-c1.parquet", "chunk_id": "s1-c1", "rows": 10},
        {"path": "parts/s2/s2-c2.parquet", "chunk_id": "s2-c2", "rows": 15},
    ]
    assert data["totals"] == {
        "rows_ok": 9,
        "rows_failed": 1,
        "prompt_tokens": 400,
        "completion_tokens": 80,
        "cost_usd": 0.25,
    }
    assert MANIFEST.totals == DatasetTotals(9, 1, 400, 80, 0.25)


def test_the_chunk_record_is_built_from_the_run_statistics() -> None:
    summary = ChunkSummary(chunk_id="s1-c1", label="chunk-000-000000000", rows=10, ok=9)
    summary.add_error("invalid_request", "bad prompt")
    summary.part = "parts/s1/s1-c1.parquet"
    summary.committed = True
    record = ChunkRecord.from_summary(summary, "parts/s1/s1-c1.parquet")
    # On disk: the summary's figures, in the order chunk records have always had.
    assert record.to_dict() == {"format_version": 1, **dataclasses.asdict(summary)}
    assert list(record.to_dict()) == [
        "format_version",
        "chunk_id",
        "label",
        "rows",
        "ok",
        "failed",
        "pending",
        "requests",
        "attempts",
        "reused",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "elapsed_s",
        "committed",
        "skipped",
        "part",
        "latency",
        "errors",
        "reasoning_tokens",
        "steps",
    ]


# -- is this output committed for this job? ---------------------------------------------------


def manifest(fingerprint: str, *chunk_ids: str) -> Manifest:
    parts = tuple(ManifestPart(f"parts/s/{c}.parquet", c, 1) for c in chunk_ids)
    return Manifest("job", fingerprint, "parquet", parts, DatasetTotals())


@pytest.mark.parametrize(
    ("committed", "fingerprint", "chunk_ids", "expected"),
    [
        (manifest("fp", "a", "b"), "fp", ["a", "b"], True),
        (manifest("fp", "a", "b"), "fp", ["b", "a"], True),  # order does not matter
        (manifest("fp"), "fp", [], True),  # an empty input commits an empty dataset
        (None, "fp", ["a"], False),  # nothing committed
        (manifest("fp", "a"), None, ["a"], False),  # no plan to compare with
        (manifest("fp", "a"), "fp2", ["a"], False),  # an edited prompt or model
        (manifest("fp", "a"), "fp", ["a", "b"], False),  # a file landed under the glob
        (manifest("fp", "a", "b"), "fp", ["a"], False),  # a file went away
    ],
)
def test_is_committed(
    committed: Manifest | None, fingerprint: str | None, chunk_ids: list[str], expected: bool
) -> None:
    assert is_committed(committed, fingerprint, chunk_ids) is expected
