"""What an output location holds: committed, pending, and whether the dataset is complete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from enrich.checkpoint import MANIFEST, PLAN, SUCCESS, committed_chunk_ids, read_json
from enrich.errors import StorageError
from enrich.results import decode
from enrich.storage import Store


@dataclass(frozen=True)
class OutputStatus:
    url: str
    job: str | None
    complete: bool
    manifest_rows: int | None
    planned_chunks: int
    committed_chunks: int
    planned_rows: int
    committed_rows: int
    fingerprint: str | None

    @property
    def pending_chunks(self) -> int:
        return self.planned_chunks - self.committed_chunks

    def lines(self) -> list[str]:
        state = "complete" if self.complete else "incomplete"
        out = [f"{self.url}: {state}" + (f" (job {self.job})" if self.job else "")]
        if self.manifest_rows is not None:
            out.append(f"  committed dataset (manifest): {self.manifest_rows} rows")
        if self.planned_chunks:
            out.append(
                f"  current plan: {self.committed_chunks}/{self.planned_chunks} chunks, "
                f"{self.committed_rows}/{self.planned_rows} rows committed, "
                f"{self.pending_chunks} chunks pending"
            )
        else:
            out.append("  no run has started here")
        return out


def output_status(url: str, storage_options: dict[str, Any] | None = None) -> OutputStatus:
    """Read the plan, chunk records and manifest under ``url`` (a few small reads)."""
    store = Store(url, storage_options)
    plan: dict[str, Any] = read_json(store, PLAN) if store.exists(PLAN) else {}
    manifest: dict[str, Any] | None = (
        read_json(store, MANIFEST) if store.exists(SUCCESS) and store.exists(MANIFEST) else None
    )
    done = committed_chunk_ids(store)
    chunks = plan.get("chunks", [])
    committed = [c for c in chunks if c["chunk_id"] in done]
    fingerprint = plan.get("fingerprint")
    return OutputStatus(
        url=store.url,
        job=plan.get("job") or (manifest or {}).get("job"),
        complete=manifest is not None and manifest.get("fingerprint") == fingerprint,
        manifest_rows=None if manifest is None else int(manifest["rows"]),
        planned_chunks=len(chunks),
        committed_chunks=len(committed),
        planned_rows=int(plan.get("rows", 0)),
        committed_rows=sum(int(c["rows"]) for c in committed),
        fingerprint=fingerprint,
    )


def read_dataset(url: str, storage_options: dict[str, Any] | None = None) -> pa.Table:
    """The committed dataset under ``url``: exactly the parts its manifest names, in order."""
    store = Store(url, storage_options)
    if not store.exists(SUCCESS):
        raise StorageError(f"{store.url}: no committed dataset (no {SUCCESS} marker)")
    manifest = read_json(store, MANIFEST)
    tables = [decode(store.read_bytes(p["path"]), manifest["format"]) for p in manifest["parts"]]
    return pa.concat_tables(tables, promote_options="default")
