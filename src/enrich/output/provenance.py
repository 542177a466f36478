"""What a committed dataset was made from: the input's columns and each file's pinned version.

The manifest records an :class:`InputRecord` at commit (``inputs`` in ``_manifest.json``), so
"is this output still the job's" can be answered from the manifest and one listing of the
input (:mod:`enrich.freshness`), without reading a byte of the input: when the listing shows
the same files at the same pins (size and ETag, or modification time on local disk), the
input is the one surveyed at commit, so its row counts and columns are the recorded ones.

All pure: :meth:`InputRecord.change` says how a listing differs from the record (a file added,
gone, rewritten), :meth:`InputRecord.sources` gives the listed files back with their recorded
row counts. A record round-trips through :meth:`~InputRecord.to_dict` and
:meth:`~InputRecord.from_dict`, which raises KeyError, TypeError or ValueError for anything
that is not one (the manifest reports it as an unreadable record).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from enrich.inputs.base import Format, SourceFile
from enrich.storage import Pin

__all__ = ["InputFileRecord", "InputRecord"]


@dataclass(frozen=True, slots=True)
class InputFileRecord:
    """One input file at commit: its key under the input root, how it reads, its pin, rows."""

    key: str
    format: Format
    compression: str | None
    version: str
    rows: int
    pin: Pin

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "format": self.format,
            "compression": self.compression,
            "version": self.version,
            "rows": self.rows,
            "size": self.pin.size,
            "tag_name": self.pin.tag_name,
            "tag": self.pin.tag,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> InputFileRecord:
        fmt = raw["format"]
        if fmt not in ("parquet", "jsonl"):
            raise ValueError(f"format {fmt!r} is not parquet or jsonl")
        compression = raw["compression"]
        return cls(
            key=str(raw["key"]),
            format=cast(Format, fmt),
            compression=None if compression is None else str(compression),
            version=str(raw["version"]),
            rows=int(raw["rows"]),
            pin=Pin(int(raw["size"]), str(raw["tag_name"]), str(raw["tag"])),
        )


@dataclass(frozen=True, slots=True)
class InputRecord:
    """The input a dataset was made from: its columns (in order) and its files (by key)."""

    columns: tuple[str, ...]
    files: tuple[InputFileRecord, ...]

    @classmethod
    def of(cls, sources: Iterable[SourceFile], columns: Iterable[str]) -> InputRecord | None:
        """The record of surveyed ``sources``; None when one is not pinned (nothing to compare)."""
        files = []
        for s in sources:
            if s.pin is None:
                return None
            files.append(
                InputFileRecord(s.key, s.format, s.compression, s.version, s.num_rows, s.pin)
            )
        return cls(tuple(columns), tuple(files))

    def change(self, listed: Sequence[SourceFile]) -> str | None:
        """How the files ``listed`` now differ from the record (the first difference), or None.

        ``listed`` comes from a listing (no rows counted): a file is the recorded one when its
        key, format, compression, version and pin are the recorded ones.
        """
        recorded = {f.key: f for f in self.files}
        now = {s.key: s for s in listed}
        added = sorted(now.keys() - recorded.keys())
        if added:
            return f"{added[0]}: a new file"
        gone = sorted(recorded.keys() - now.keys())
        if gone:
            return f"{gone[0]}: gone"
        for key in sorted(now):
            was, source = recorded[key], now[key]
            if (source.format, source.compression) != (was.format, was.compression):
                return f"{key}: read as {source.format}, was {was.format}"
            if source.pin is None:
                return f"{key}: not pinned"
            moved = was.pin.change(source.pin)
            if moved is not None:
                return f"{key}: {moved}"
            if source.version != was.version:
                return f"{key}: version {was.version} -> {source.version}"
        return None

    def sources(self, listed: Sequence[SourceFile]) -> list[SourceFile]:
        """The ``listed`` files (in their order) with their recorded row counts.

        Only meaningful when :meth:`change` found no difference; raises KeyError for a file
        the record does not have.
        """
        rows = {f.key: f.rows for f in self.files}
        return [replace(s, num_rows=rows[s.key]) for s in listed]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "files": [f.to_dict() for f in self.files]}

    @classmethod
    def from_dict(cls, raw: Any) -> InputRecord:
        if not isinstance(raw, dict):
            raise TypeError("inputs is not an object")
        columns = raw["columns"]
        if not isinstance(columns, list):
            raise TypeError("inputs.columns is not a list")
        return cls(
            tuple(str(c) for c in columns),
            tuple(InputFileRecord.from_dict(f) for f in raw["files"]),
        )
