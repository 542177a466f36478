"""The commit protocol: a chunk's part then its record; the dataset's manifest then its marker.

Every file is written whole (a local rename, one object PUT), so a crash at any instant leaves
each file either complete or absent.

* A chunk is committed when its record exists. :func:`commit_chunk` writes the part first and
  the record after it, so a record always names a whole file.
* The dataset is committed when its success marker exists. :func:`commit_dataset` writes the
  manifest (naming one part per chunk, from their records), then the marker, then deletes
  journals and the parts and records the manifest does not name. Readers trust only the
  manifest, so until it is written they see the previous dataset (or none) in full.

The dataset commit is fenced by the run's lease (``fence``, :meth:`enrich.lease.Lease.confirm`,
which raises when the lease is no longer this run's): it is checked before the manifest is
written, and before each batch of deletes. A run that lost its lease (another run took it over)
writes no manifest and deletes nothing; the garbage is collected only when the manifest in place
is the one this commit wrote, and only what was listed while the lease was still this run's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from enrich.output.layout import LAYOUT
from enrich.output.provenance import InputRecord
from enrich.output.records import ChunkRecord, Manifest
from enrich.planning import ChunkSpec
from enrich.results import OutputFormat
from enrich.storage import Store
from enrich.summary import ChunkSummary

# Reading the chunk records at a commit is one small GET each: a few at once.
_RECORD_READERS = 8
# Garbage is deleted in batches (one S3 request each), the lease checked before each.
_DELETE_BATCH = 1000


def _unfenced() -> None:
    """No lease to check (a store no other run writes to)."""


def commit_chunk(
    store: Store,
    chunk: ChunkSpec,
    data: bytes,
    fmt: OutputFormat,
    summary: ChunkSummary,
    fence: Callable[[], None] | None = None,
) -> ChunkRecord:
    """Write the chunk's part, then its record. Either both are visible or the chunk is not.

    ``summary`` is marked committed and told its part; the record is built from it. ``fence``
    (the run's lease) is checked first: a run that lost its lease raises it and writes nothing,
    so it cannot overwrite the part another run committed under the same key.
    """
    (fence or _unfenced)()
    key = LAYOUT.part(chunk.slot_id, chunk.chunk_id, fmt)
    store.write_bytes(key, data)
    summary.part = key
    summary.committed = True
    record = ChunkRecord.from_summary(summary, key)
    store.write_bytes(LAYOUT.chunk_record(chunk.chunk_id), record.to_bytes())
    return record


def read_chunk_record(store: Store, chunk_id: str) -> ChunkRecord:
    key = LAYOUT.chunk_record(chunk_id)
    return ChunkRecord.from_bytes(store.read_bytes(key), store.url_of(key))


def commit_dataset(
    store: Store,
    *,
    job: str,
    fingerprint: str,
    fmt: OutputFormat,
    chunk_ids: Sequence[str],
    fence: Callable[[], None] | None = None,
    output_schema: Mapping[str, Any] | None = None,
    inputs: InputRecord | None = None,
) -> Manifest:
    """Commit the dataset of ``chunk_ids`` (every one has a record): manifest, marker, cleanup.

    Returns the manifest written. The parts are named in the order of ``chunk_ids``; the
    manifest records ``output_schema`` (the job's structured output, if any) and ``inputs``
    (what the dataset was made from, so its freshness is told from a listing). Whatever
    ``fence`` raises (LeaseLost) stops the commit before it writes or deletes anything more.
    """
    with ThreadPoolExecutor(max_workers=_RECORD_READERS) as pool:
        records = list(pool.map(lambda c: read_chunk_record(store, c), chunk_ids))
    manifest = Manifest.of(
        records,
        job=job,
        fingerprint=fingerprint,
        fmt=fmt,
        output_schema=output_schema,
        inputs=inputs,
    )
    data = manifest.to_bytes()
    fence = fence or _unfenced
    fence()
    store.write_bytes(LAYOUT.manifest, data)
    store.write_bytes(LAYOUT.success, b"")
    fence()
    if store.read_bytes(LAYOUT.manifest) == data:  # another commit's garbage is not ours to pick
        collect_garbage(store, manifest, fence)
    return manifest


def collect_garbage(
    store: Store, manifest: Manifest, fence: Callable[[], None] | None = None
) -> int:
    """Delete journals, and parts and records the manifest no longer names.

    Lists after ``fence`` passed, and calls it again before every batch of deletes.
    """
    keep_parts = {p.path for p in manifest.parts}
    keep_records = {LAYOUT.chunk_record(p.chunk_id) for p in manifest.parts}
    stale = [k for k in store.keys(LAYOUT.parts) if k not in keep_parts]
    stale += [k for k in store.keys(LAYOUT.chunks) if k not in keep_records]
    stale += store.keys(LAYOUT.journal)
    stale += store.keys(LAYOUT.shards)  # no shard works without the run lease we hold
    for start in range(0, len(stale), _DELETE_BATCH):
        (fence or _unfenced)()
        store.delete(stale[start : start + _DELETE_BATCH])
    return len(stale)
