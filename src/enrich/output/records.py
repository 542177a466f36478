"""The records an output location holds: the plan, the chunk record and the manifest.

Each record is a frozen dataclass with a ``format_version``, serialised to JSON by
``to_bytes`` and read back by ``from_bytes`` (which round-trip). A record read from storage is
checked before it is trusted:

* no ``format_version`` (files written before versions existed) reads as version 1;
* a version newer than this code reads raises :class:`NewerFormat`, one line naming the file,
  so an old install never misreads, or overwrites, what a newer one committed;
* anything else that is not the record (bad JSON, a missing field) raises
  :class:`UnreadableRecord`, a StorageError naming the file.

The manifest of a job with an output schema records it (``output_schema``: the JSON Schema,
its name and each typed column's Arrow type) and is format 2; a manifest without one is still
written as format 1, so an older install keeps reading the outputs it understands.

The manifest also records what the dataset was made from (``inputs``: the input's columns,
each file's key, pin and row count, :class:`~enrich.output.provenance.InputRecord`), so
whether it is still current can be told from a listing of the input. The field is optional and
needs no new format: an older install ignores it, and a manifest without it is checked the old
way, by surveying the input.

The chunk record is what a chunk commit leaves on disk; it is built from the engine's
run statistics (:class:`enrich.summary.ChunkSummary`) but is its own type, so the statistics
can change without changing what is stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final, cast

import orjson

from enrich.errors import EnrichError, StorageError
from enrich.output.provenance import InputRecord
from enrich.results import OutputFormat
from enrich.summary import TALLY_COUNTS, ChunkSummary

PLAN_FORMAT: Final = 1
CHUNK_RECORD_FORMAT: Final = 1
#: The newest manifest format this code reads: 2 added ``output_schema``.
MANIFEST_FORMAT: Final = 2
_PLAIN_MANIFEST_FORMAT: Final = 1


class NewerFormat(EnrichError):
    """A record was written by a newer cerebras-enrich than this one."""


class UnreadableRecord(StorageError):
    """A record under the output is not what its name says (bad JSON, a missing field)."""


def _load(data: bytes, where: str, newest: int) -> dict[str, Any]:
    """The JSON object in ``data``, its ``format_version`` checked (missing means 1)."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UnreadableRecord(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise UnreadableRecord(f"{where}: expected a JSON object")
    version = raw.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UnreadableRecord(f"{where}: format_version {version!r} is not a version")
    if version > newest:
        raise NewerFormat(
            f"{where}: written by a newer cerebras-enrich "
            f"(format {version}, this one reads up to {newest}); upgrade"
        )
    return cast(dict[str, Any], raw)


def _output_format(value: Any) -> OutputFormat:
    if value not in ("parquet", "jsonl"):
        raise ValueError(f"format {value!r} is not parquet or jsonl")
    return cast(OutputFormat, value)


def _field_error(where: str, exc: Exception) -> UnreadableRecord:
    return UnreadableRecord(f"{where}: not a valid record ({type(exc).__name__}: {exc})")


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedChunk:
    chunk_id: str
    rows: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What the current job will commit: written before its first chunk runs."""

    job: str
    fingerprint: str
    rows: int
    format: OutputFormat
    chunks: tuple[PlannedChunk, ...]
    format_version: int = PLAN_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "job": self.job,
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "format": self.format,
            "chunks": [{"chunk_id": c.chunk_id, "rows": c.rows} for c in self.chunks],
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Plan:
        raw = _load(data, where, PLAN_FORMAT)
        try:
            return cls(
                job=str(raw["job"]),
                fingerprint=str(raw["fingerprint"]),
                rows=int(raw["rows"]),
                format=_output_format(raw["format"]),
                chunks=tuple(
                    PlannedChunk(str(c["chunk_id"]), int(c["rows"])) for c in raw["chunks"]
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _field_error(where, exc) from None


# -- the chunk record -------------------------------------------------------------------------


_COUNTS = ("rows", *TALLY_COUNTS)


# kw_only: the fields keep the order chunk records have always had on disk.
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRecord:
    """What a committed chunk leaves under ``_chunks/``: its part, rows, tokens and cost.

    The figures are the chunk's run statistics at commit; ``part`` is the key of its data file.
    """

    chunk_id: str
    label: str
    rows: int = 0
    ok: int = 0
    failed: int = 0
    pending: int = 0
    requests: int = 0
    attempts: int = 0
    reused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    committed: bool = True
    skipped: bool = False
    part: str
    latency: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[Any]] = field(default_factory=dict)
    # Added later: at the end, so the older fields keep their order on disk.
    reasoning_tokens: int = 0
    steps: dict[str, dict[str, float]] = field(default_factory=dict)
    format_version: int = CHUNK_RECORD_FORMAT

    @classmethod
    def from_summary(cls, summary: ChunkSummary, part: str) -> ChunkRecord:
        """The record of a chunk whose run statistics are ``summary`` and data is ``part``."""
        return cls(
            chunk_id=summary.chunk_id,
            label=summary.label,
            **{name: getattr(summary, name) for name in _COUNTS},
            cost_usd=summary.cost_usd,
            elapsed_s=summary.elapsed_s,
            skipped=summary.skipped,
            part=part,
            latency=dict(summary.latency),
            errors={kind: list(entry) for kind, entry in summary.errors.items()},
            steps={name: dict(figures) for name, figures in summary.steps.items()},
        )

    def to_summary(self) -> ChunkSummary:
        """The committed chunk's run statistics, as :meth:`from_summary` recorded them."""
        return ChunkSummary(
            chunk_id=self.chunk_id,
            label=self.label,
            **{name: getattr(self, name) for name in _COUNTS},
            cost_usd=self.cost_usd,
            elapsed_s=self.elapsed_s,
            committed=True,
            skipped=self.skipped,
            part=self.part,
            latency=dict(self.latency),
            errors={kind: list(entry) for kind, entry in self.errors.items()},
            steps={name: dict(figures) for name, figures in self.steps.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"format_version": data.pop("format_version"), **data}

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ChunkRecord:
        raw = _load(data, where, CHUNK_RECORD_FORMAT)
        try:
            if not isinstance(raw["part"], str):
                raise TypeError("part is not a key")
            return cls(
                chunk_id=str(raw["chunk_id"]),
                label=str(raw["label"]),
                **{name: int(raw.get(name, 0)) for name in _COUNTS},
                cost_usd=float(raw.get("cost_usd", 0.0)),
                elapsed_s=float(raw.get("elapsed_s", 0.0)),
                committed=bool(raw.get("committed", True)),
                skipped=bool(raw.get("skipped", False)),
                part=raw["part"],
                latency={str(k): int(v) for k, v in raw.get("latency", {}).items()},
                errors={str(k): list(v) for k, v in raw.get("errors", {}).items()},
                steps={
                    str(k): {str(f): float(x) for f, x in v.items()}
                    for k, v in raw.get("steps", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _field_error(where, exc) from None


# -- the manifest -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestPart:
    path: str
    chunk_id: str
    rows: int


@dataclass(frozen=True, slots=True)
class DatasetTotals:
    """What the committed dataset holds and cost, summed over its chunk records."""

    rows_ok: int = 0
    rows_failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def of(cls, records: Iterable[ChunkRecord]) -> DatasetTotals:
        records = list(records)
        return cls(
            rows_ok=sum(r.ok for r in records),
            rows_failed=sum(r.failed for r in records),
            prompt_tokens=sum(r.prompt_tokens for r in records),
            completion_tokens=sum(r.completion_tokens for r in records),
            cost_usd=sum(r.cost_usd for r in records),
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """The committed dataset: the parts readers read, in order, and what they hold.

    ``output_schema`` is what :meth:`enrich.structured.OutputSchema.describe` says of the
    job's structured output (None: free text), so a reader can check the typed columns.
    ``inputs`` is the input the dataset was made from (None: committed before it was recorded).
    """

    job: str
    fingerprint: str
    format: OutputFormat
    parts: tuple[ManifestPart, ...]
    totals: DatasetTotals
    committed_at: float = 0.0
    output_schema: dict[str, Any] | None = None
    format_version: int = _PLAIN_MANIFEST_FORMAT
    inputs: InputRecord | None = None

    @classmethod
    def of(
        cls,
        records: Iterable[ChunkRecord],
        *,
        job: str,
        fingerprint: str,
        fmt: OutputFormat,
        committed_at: float | None = None,
        output_schema: Mapping[str, Any] | None = None,
        inputs: InputRecord | None = None,
    ) -> Manifest:
        """The manifest naming one part per chunk record, in the order given."""
        records = list(records)
        return cls(
            job=job,
            fingerprint=fingerprint,
            format=fmt,
            parts=tuple(ManifestPart(r.part, r.chunk_id, r.rows) for r in records),
            totals=DatasetTotals.of(records),
            committed_at=time.time() if committed_at is None else committed_at,
            output_schema=None if output_schema is None else dict(output_schema),
            format_version=_PLAIN_MANIFEST_FORMAT if output_schema is None else MANIFEST_FORMAT,
            inputs=inputs,
        )

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def chunk_ids(self) -> frozenset[str]:
        return frozenset(p.chunk_id for p in self.parts)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format_version": self.format_version,
            "job": self.job,
            "fingerprint": self.fingerprint,
            "format": self.format,
            "committed_at": self.committed_at,
            "rows": self.rows,
            "parts": [asdict(p) for p in self.parts],
            "totals": asdict(self.totals),
        }
        if self.output_schema is not None:
            data["output_schema"] = self.output_schema
        if self.inputs is not None:
            data["inputs"] = self.inputs.to_dict()
        return data

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        raw = _load(data, where, MANIFEST_FORMAT)
        try:
            totals: Mapping[str, Any] = raw.get("totals", {})
            return cls(
                job=str(raw["job"]),
                fingerprint=str(raw["fingerprint"]),
                format=_output_format(raw["format"]),
                parts=tuple(
                    ManifestPart(str(p["path"]), str(p["chunk_id"]), int(p["rows"]))
                    for p in raw["parts"]
                ),
                totals=DatasetTotals(
                    rows_ok=int(totals.get("rows_ok", 0)),
                    rows_failed=int(totals.get("rows_failed", 0)),
                    prompt_tokens=int(totals.get("prompt_tokens", 0)),
                    completion_tokens=int(totals.get("completion_tokens", 0)),
                    cost_usd=float(totals.get("cost_usd", 0.0)),
                ),
                committed_at=float(raw.get("committed_at", 0.0)),
                output_schema=_output_schema(raw.get("output_schema")),
                format_version=int(raw.get("format_version", 1)),
                inputs=None if raw.get("inputs") is None else InputRecord.from_dict(raw["inputs"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _field_error(where, exc) from None


def _output_schema(value: Any) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise TypeError("output_schema is not an object")
    return value
