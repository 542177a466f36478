"""The commit protocol: a chunk's part then its record; the dataset's manifest then its marker.

Every file is written whole (a local rename, one object PUT), so a crash at any instant leaves
each file either complete or absent.

* A chunk is committed when its record exists. :func:`commit_chunk` writes the part first and
  the record after it, so a record always names a whole file.
* The dataset is committed when its success marker exists. :func:`commit_dataset` writes the
  manifest (naming one part per chunk, from their records), then the marker, then deletes
  journals and the parts and records the manifest does not name. Readers trust only the
  manifest, so until it is written they see the previous dataset (or none) in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from enrich.output.layout import LAYOUT
from enrich.output.records import ChunkRecord, Manifest
from enrich.planning import ChunkSpec
from enrich.results import OutputFormat
from enrich.storage import Store
from enrich.summary import ChunkSummary

# Reading the chunk records at a commit is one small GET each: a few at once.
_RECORD_READERS = 8


def commit_chunk(
    store: Store, chunk: ChunkSpec, data: bytes, fmt: OutputFormat, summary: ChunkSummary
) -> ChunkRecord:
    """Write the chunk's part, then its record. Either both are visible or the chunk is not.

    ``summary`` is marked committed and told its part; the record is built from it.
    """
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
    store: Store, *, job: str, fingerprint: str, fmt: OutputFormat, chunk_ids: Sequence[str]
) -> Manifest:
    """Commit the dataset of ``chunk_ids`` (every one has a record): manifest, marker, cleanup.

    Returns the manifest written. The parts are named in the order of ``chunk_ids``.
    """
    with ThreadPoolExecutor(max_workers=_RECORD_READERS) as pool:
        records = list(pool.map(lambda c: read_chunk_record(store, c), chunk_ids))
    manifest = Manifest.of(records, job=job, fingerprint=fingerprint, fmt=fmt)
    store.write_bytes(LAYOUT.manifest, manifest.to_bytes())
    store.write_bytes(LAYOUT.success, b"")
    collect_garbage(store, manifest)
    return manifest


def collect_garbage(store: Store, manifest: Manifest) -> int:
    """Delete journals, and parts and records the manifest no longer names."""
    keep_parts = {p.path for p in manifest.parts}
    keep_records = {LAYOUT.chunk_record(p.chunk_id) for p in manifest.parts}
    stale = [k for k in store.keys(LAYOUT.parts) if k not in keep_parts]
    stale += [k for k in store.keys(LAYOUT.chunks) if k not in keep_records]
    stale += store.keys(LAYOUT.journal)
    store.delete(stale)
    return len(stale)
