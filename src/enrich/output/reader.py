"""Reading an output location: its status, its manifest, and the committed dataset.

Every function only reads, and works on any store URL (``s3://`` with ``storage_options`` or
the AWS environment, ``file://``, ``memory://``, a local path). :func:`read_dataset` is how a
reader should consume an output: it trusts the manifest alone, so it sees a whole dataset or
none, never the parts of a run in progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from enrich.errors import StorageError
from enrich.lease import LeaseRecord, read_lease
from enrich.output.committed import (
    committed_chunk_ids,
    committed_manifest,
    is_committed,
    read_manifest_record,
)
from enrich.output.layout import LAYOUT
from enrich.output.records import Manifest, Plan
from enrich.results import decode
from enrich.storage import Store
from enrich.structured.output import recorded_fields

# A reader that loses a race with a commit (the parts it was reading were replaced) starts
# over from the new manifest; more changes than this while it reads is a storage problem.
_READ_ATTEMPTS = 5


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
    lease: LeaseRecord | None = None
    checked_at: float = 0.0

    @property
    def pending_chunks(self) -> int:
        return self.planned_chunks - self.committed_chunks

    @property
    def running(self) -> bool:
        """A run holds an unexpired lease (it may still have died; see ``enrich.lease``)."""
        return self.lease is not None and self.lease.expires_at > self.checked_at

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
        if self.lease is not None:
            what = "running" if self.running else "stale run lease"
            out.append(f"  {what}: {self.lease.describe(self.checked_at)}")
        return out


def _plan(store: Store) -> Plan | None:
    key = LAYOUT.plan
    if not store.exists(key):
        return None
    return Plan.from_bytes(store.read_bytes(key), store.url_of(key))


def output_status(url: str, storage_options: dict[str, Any] | None = None) -> OutputStatus:
    """Read the plan, chunk records, manifest and lease under ``url`` (a few small reads).

    Complete means the committed dataset is the current plan's (see :func:`is_committed`).
    """
    store = Store(url, storage_options)
    plan = _plan(store)
    manifest = committed_manifest(store)
    done = committed_chunk_ids(store)
    chunks = plan.chunks if plan is not None else ()
    committed = [c for c in chunks if c.chunk_id in done]
    fingerprint = plan.fingerprint if plan is not None else None
    return OutputStatus(
        url=store.url,
        job=(plan.job if plan is not None else None) or (manifest.job if manifest else None),
        complete=is_committed(manifest, fingerprint, (c.chunk_id for c in chunks)),
        manifest_rows=None if manifest is None else manifest.rows,
        planned_chunks=len(chunks),
        committed_chunks=len(committed),
        planned_rows=plan.rows if plan is not None else 0,
        committed_rows=sum(c.rows for c in committed),
        fingerprint=fingerprint,
        lease=read_lease(store),
        checked_at=time.time(),
    )


def read_manifest(url: str, storage_options: dict[str, Any] | None = None) -> Manifest:
    """The manifest of the committed dataset under ``url`` (StorageError when there is none)."""
    return _manifest(Store(url, storage_options))


def _manifest(store: Store) -> Manifest:
    if not store.exists(LAYOUT.success):
        raise StorageError(f"{store.url}: no committed dataset (no {LAYOUT.success} marker)")
    return read_manifest_record(store)


def _typed(table: pa.Table, manifest: Manifest, where: str) -> pa.Table:
    """A JSONL part's typed columns cast back to the Arrow types the manifest records (JSON
    keeps values, not types: an enum reads back as strings, a column of nulls as ``null``);
    a Parquet part has its types already."""
    if manifest.format != "jsonl" or manifest.output_schema is None:
        return table
    for column, typed in recorded_fields(manifest.output_schema).items():
        at = table.schema.get_field_index(column)
        if at < 0:
            continue
        try:
            restored = typed.restore(table.column(at))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise StorageError(
                f"{where}: column {column} does not read as {typed.type}: {exc}"
            ) from None
        table = table.set_column(at, pa.field(column, typed.type, nullable=True), restored)
    return table


def read_dataset(url: str, storage_options: dict[str, Any] | None = None) -> pa.Table:
    """The committed dataset under ``url``: exactly the parts its manifest names, in order.

    Typed columns keep their Arrow types (an enum is ``dictionary<int32, string>``, a list of
    strings ``list<string>``), so polars and DuckDB read them as they are::

        import duckdb
        import polars as pl
        from enrich import read_dataset

        reviews = read_dataset("out/reviews")
        frame = pl.from_arrow(reviews)  # triage_sentiment: Categorical, triage_topics: List
        frame.explode("triage_topics").group_by("triage_topics").len()
        duckdb.sql("SELECT triage_sentiment, count(*), sum(cost_usd) FROM reviews GROUP BY 1")

    (DuckDB finds the Arrow table ``reviews`` by its Python name.) The manifest
    (:func:`read_manifest`) records each typed column's Arrow type under ``output_schema``;
    a JSONL output's typed columns are cast back to those types, so they read as a Parquet
    output's do.

    If a newer commit replaces the dataset while it is being read (its old parts are then
    deleted), the read starts over from the new manifest, so the result is always one
    manifest's dataset, whole.
    """
    store = Store(url, storage_options)
    for _ in range(_READ_ATTEMPTS):
        manifest = _manifest(store)
        try:
            tables = [
                _typed(
                    decode(store.read_bytes(p.path), manifest.format),
                    manifest,
                    store.url_of(p.path),
                )
                for p in manifest.parts
            ]
        except StorageError:
            if _manifest(store) == manifest:
                raise  # nothing was committed meanwhile: a real failure
            continue
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables, promote_options="default")
    raise StorageError(f"{store.url}: the dataset changed {_READ_ATTEMPTS} times while reading")
