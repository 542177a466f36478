"""Pins: what identifies one version of an input object, so a rewrite is noticed.

A :class:`Pin` is an object's size and one tag that changes whenever it is rewritten: on local
disk the modification time in nanoseconds (``mtime_ns``), on S3 (and stores like it) the
``ETag``, else a ``VersionId``, else the last-modified or created time the store reports.
Discovery pins every input file (:func:`pin_of`, from the listing); reading compares the pin
with the object as it is now (:func:`current_pin`) before it reads and after each range it
reads, so a file rewritten between planning and reading is an error, never a short or mixed
read. On S3 reads are pinned by the server too: s3fs sends each ranged GET with ``If-Match``
on the ETag it saw at open.

The ETag is the tag on S3 even in a versioned bucket, since a listing reports it and not the
version: an identical rewrite keeps its ETag, which is harmless (same bytes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from enrich.storage.errors import storage_errors

__all__ = ["Pin", "current_pin", "pin_of"]

# Tags in order of preference, as a store's info names them.
_TAGS = ("ETag", "etag", "VersionId", "LastModified", "last_modified", "mtime", "created")
_NAMES = {"etag": "ETag", "last_modified": "LastModified"}


@dataclass(frozen=True, slots=True)
class Pin:
    """One version of an object: ``size`` in bytes and a ``tag`` named ``tag_name``."""

    size: int
    tag_name: str
    tag: str

    def change(self, now: Pin) -> str | None:
        """How ``now`` differs from this pin (``size 1000 -> 1200``), or None if it does not."""
        if now.size != self.size:
            return f"size {self.size} -> {now.size}"
        if (now.tag_name, now.tag) != (self.tag_name, self.tag):
            return f"{self.tag_name} {self.tag} -> {now.tag}"
        return None


def pin_of(info: Mapping[str, Any], *, local: bool) -> Pin:
    """The pin of an object from its listing or ``info`` entry (a local file is stat'ed)."""
    if local:
        stat = os.stat(str(info["name"]))
        return Pin(stat.st_size, "mtime_ns", str(stat.st_mtime_ns))
    size = int(info.get("size") or 0)
    for name in _TAGS:
        value = info.get(name)
        if value is not None and value != "":
            if isinstance(value, datetime):
                value = value.timestamp()
            return Pin(size, _NAMES.get(name, name), str(value).strip('"'))
    return Pin(size, "size", "")


def current_pin(fs: Any, path: str, url: str, *, local: bool, options: Mapping[str, Any]) -> Pin:
    """The pin of the object at ``path`` on ``fs`` as it is now (StorageError naming ``url``)."""
    with storage_errors(url, options):
        if local:
            return pin_of({"name": path}, local=True)
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache(path)  # a listing cache must not answer for the object now
        return pin_of(fs.info(path), local=False)
