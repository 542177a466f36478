"""Find an input's files: their URLs, keys, formats, sizes, versions, pins and row counts.

An input (:class:`~enrich.config.InputSpec`) names one file, a directory or a glob of Parquet or
JSONL files (JSONL optionally gzipped). :func:`survey_input` lists them through
:mod:`enrich.storage`, pins each one to the version listed, and surveys each with the reader of
its format (:func:`reader_for`): rows counted and checked, schema, id digests. :func:`discover`
is the same without what the survey found; :func:`list_sources` is the listing alone, with no
byte of any file read. A file's format comes from ``input.format`` when
set, else from its extension (:func:`format_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from enrich.config.schema import InputSpec
from enrich.errors import InputError
from enrich.inputs.base import FileSurvey, Format, InputReader, SourceFile
from enrich.inputs.jsonl import JsonlReader
from enrich.inputs.parquet import ParquetReader
from enrich.storage import filesystem, list_inputs, qualify

__all__ = [
    "EXTENSIONS",
    "SurveyedInput",
    "discover",
    "format_of",
    "list_sources",
    "reader_for",
    "survey_input",
]

EXTENSIONS: dict[str, tuple[Format, str | None]] = {
    ".parquet": ("parquet", None),
    ".pq": ("parquet", None),
    ".jsonl": ("jsonl", None),
    ".ndjson": ("jsonl", None),
    ".json": ("jsonl", None),
    ".jsonl.gz": ("jsonl", "gzip"),
    ".ndjson.gz": ("jsonl", "gzip"),
    ".json.gz": ("jsonl", "gzip"),
}
_READERS: dict[Format, type[InputReader]] = {"parquet": ParquetReader, "jsonl": JsonlReader}


def reader_for(source: SourceFile, spec: InputSpec) -> InputReader:
    """The reader of one input file, by its format."""
    return _READERS[source.format](source, spec)


def format_of(url: str, spec: InputSpec) -> tuple[Format, str | None]:
    """``(format, compression)`` of the file at ``url``: ``input.format`` wins over the name.

    A name ending in ``.gz`` is gzip whatever the format; an unknown extension with no
    ``input.format`` is an InputError.
    """
    name = _basename(url).lower()
    compression = "gzip" if name.endswith(".gz") else None
    if spec.format is not None:
        return spec.format, compression
    for ext, found in sorted(EXTENSIONS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(ext):
            return found
    known = ", ".join(sorted(EXTENSIONS))
    raise InputError(
        f"{url}: unknown file extension (expected one of {known}, or set input.format)"
    )


@dataclass(frozen=True, slots=True)
class SurveyedInput:
    """The input's files, sorted by URL, and what surveying each found (same order)."""

    sources: list[SourceFile]
    surveys: list[FileSurvey]


def discover(spec: InputSpec) -> list[SourceFile]:
    """Every file of the input, sorted by URL, with its format, pin and row count.

    Raises InputError when nothing matches, a file's format is unknown or corrupt, or the input
    has no rows at all; StorageError when storage cannot be reached.
    """
    return survey_input(spec).sources


def survey_input(spec: InputSpec) -> SurveyedInput:
    """:func:`discover`, keeping each file's survey (with ``input.id_column``'s digests).

    Raises what :func:`discover` raises, and InputError for whatever a file's survey finds
    (:meth:`InputReader.survey`).
    """
    sources = []
    surveys = []
    for source in list_sources(spec):
        found = reader_for(source, spec).survey(spec.id_column)
        sources.append(replace(source, num_rows=found.num_rows))
        surveys.append(found)
    if not any(s.num_rows for s in sources):
        raise InputError(f"{spec.path}: the input is empty (no rows in {len(sources)} file(s))")
    return SurveyedInput(sources, surveys)


def list_sources(spec: InputSpec) -> list[SourceFile]:
    """Every file of the input as one listing finds it, sorted by URL; not a byte is read.

    Each has its URL, key, format, size, version and pin; ``num_rows`` is 0 (counting rows is
    :func:`survey_input`'s). Raises InputError when nothing matches or a file's format is
    unknown; StorageError when storage cannot be reached.
    """
    objects = list_inputs(spec.path, spec.storage_options)
    if not objects:
        raise InputError(f"{spec.path}: no input files match")
    root = _root(spec.path, spec.storage_options, [o.url for o in objects])
    sources = []
    for obj in objects:
        fmt, compression = format_of(obj.url, spec)
        key = obj.url[len(root) + 1 :] if obj.url.startswith(root + "/") else _basename(obj.url)
        sources.append(
            SourceFile(obj.url, key, fmt, obj.size, obj.version, 0, compression, obj.pin)
        )
    return sources


def _basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _root(path: str, storage_options: dict[str, Any], urls: list[str]) -> str:
    """The fixed part of the input path (a glob's prefix, a directory, a file's parent)."""
    cut = min((path.index(ch) for ch in "*?[" if ch in path), default=None)
    if cut is not None:
        fixed = path[:cut].rsplit("/", 1)[0] if "/" in path[:cut] else "."
    else:
        fixed = path.rstrip("/")
    fs, resolved = filesystem(fixed, storage_options)
    root = qualify(fs, resolved).rstrip("/")
    if urls == [root]:  # a single file named directly: its key is its name
        return root.rsplit("/", 1)[0]
    return root
