"""What is committed under an output: which chunks, which dataset, and whether it is a job's.

:func:`is_committed` is the one rule for "is this output committed for this job": the run uses
it to skip a finished job, ``enrich status`` to say ``complete``, and date partitions (and so
the scheduled and backfill flows) to tell what is left to do. A dataset is a job's when its
manifest was made by the same config (same fingerprint) from the same input (the same chunks):
an edited prompt or model changes the fingerprint, and a file that lands under a glob adds a
chunk, and either makes the output uncommitted again.
"""

from __future__ import annotations

from collections.abc import Iterable

from enrich.output.layout import LAYOUT
from enrich.output.records import Manifest
from enrich.storage import Store


def is_committed(
    manifest: Manifest | None, fingerprint: str | None, chunk_ids: Iterable[str]
) -> bool:
    """Whether ``manifest`` commits exactly the job with ``fingerprint`` and ``chunk_ids``.

    No manifest, or no fingerprint to compare with (no plan), is not committed.
    """
    if manifest is None or fingerprint is None:
        return False
    return manifest.fingerprint == fingerprint and manifest.chunk_ids == frozenset(chunk_ids)


def committed_manifest(store: Store) -> Manifest | None:
    """The manifest of the committed dataset, or None when nothing is committed.

    Only a manifest behind a success marker counts: the marker is written after the manifest,
    so a manifest without one was interrupted. Raises UnreadableRecord for a manifest that is
    not one and NewerFormat for one a newer version wrote.
    """
    if not (store.exists(LAYOUT.success) and store.exists(LAYOUT.manifest)):
        return None
    return read_manifest_record(store)


def read_manifest_record(store: Store) -> Manifest:
    """The manifest under ``store`` (StorageError when it cannot be read)."""
    key = LAYOUT.manifest
    return Manifest.from_bytes(store.read_bytes(key), store.url_of(key))


def committed_chunk_ids(store: Store) -> set[str]:
    """Ids of every chunk with a commit record (one listing)."""
    ids = (LAYOUT.parse_chunk_record(k) for k in store.keys(LAYOUT.chunks))
    return {i for i in ids if i is not None}
