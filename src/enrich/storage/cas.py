"""Compare-and-swap on one object: the conditional writes the run lease is built on.

A version tag names what a reader saw; :meth:`CompareAndSwap.swap` writes only if the object is
still at that version (``expected=None``: only if there is no object), and returns the new tag,
or None when the precondition failed. Each backend does it its own way, chosen once per store by
:func:`cas_for`:

* local disk -- :class:`LocalLockCAS`: a lock file on the host around compare and replace;
  tags are content digests. Atomic across the host's processes.
* memory -- :class:`ProcessLockCAS`: the in-memory filesystem is per process, so one process
  lock makes compare-and-write atomic.
* S3 -- :class:`ConditionalPutCAS`: ``If-None-Match``/``If-Match`` PUTs, tags are ETags. A store
  that answers ``NotImplemented`` gets compare-then-write instead.
* anything else -- :class:`CheckedCAS`: compare, write, read back. This narrows the race but
  does not close it.

Paths are the filesystem's own paths; the caller (the Store) turns failures into StorageErrors.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from enrich.storage.errors import error_code
from enrich.storage.local import local_lock, replace_local

__all__ = [
    "CheckedCAS",
    "CompareAndSwap",
    "ConditionalPutCAS",
    "LocalLockCAS",
    "ProcessLockCAS",
    "Versioned",
    "cas_for",
]

# The in-memory filesystem is per process; one lock makes its compare-and-swap atomic.
_MEMORY_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Versioned:
    """An object's bytes and the version tag a conditional write must name to replace it."""

    data: bytes
    version: str


class CompareAndSwap(Protocol):
    """Conditional reads and writes of single objects on one filesystem."""

    def read(self, path: str) -> Versioned | None:
        """The object at ``path`` with its version tag, or None when there is none."""
        ...

    def swap(self, path: str, data: bytes, expected: str | None) -> str | None:
        """Write ``data`` only if the object is at ``expected``; the new tag, or None."""
        ...

    def delete_if(self, path: str, expected: str) -> bool:
        """Delete the object if it is at ``expected``; True if it was deleted."""
        ...


def cas_for(protocol: str) -> Callable[[Any], CompareAndSwap]:
    """The compare-and-swap of a filesystem protocol (``file``, ``memory``, ``s3``...)."""
    if protocol in ("file", "local"):
        return LocalLockCAS
    if protocol == "memory":
        return ProcessLockCAS
    if protocol == "s3":
        return ConditionalPutCAS
    return CheckedCAS


def digest(data: bytes) -> str:
    """The version tag of ``data`` where the store has none of its own."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class CheckedCAS:
    """Compare, write, read back: for stores with no conditional writes and no shared lock."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def read(self, path: str) -> Versioned | None:
        try:
            data = bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        return Versioned(data, digest(data))

    def swap(self, path: str, data: bytes, expected: str | None) -> str | None:
        current = self.read(path)
        if (current.version if current else None) != expected:
            return None
        self.fs.pipe_file(path, data)
        return digest(data) if bytes(self.fs.cat_file(path)) == data else None

    def delete_if(self, path: str, expected: str) -> bool:
        current = self.read(path)
        if current is None or current.version != expected:
            return False
        self.fs.rm([path])
        return True


class ProcessLockCAS(CheckedCAS):
    """Compare and write under one process-wide lock: atomic for a per-process filesystem."""

    def swap(self, path: str, data: bytes, expected: str | None) -> str | None:
        with _MEMORY_LOCK:
            return super().swap(path, data, expected)

    def delete_if(self, path: str, expected: str) -> bool:
        with _MEMORY_LOCK:
            return super().delete_if(path, expected)


class LocalLockCAS(CheckedCAS):
    """Compare and replace under a lock file on the host: atomic across its processes."""

    def swap(self, path: str, data: bytes, expected: str | None) -> str | None:
        with local_lock(path):
            if _digest_of_file(path) != expected:
                return None
            replace_local(path, data)
        return digest(data)

    def delete_if(self, path: str, expected: str) -> bool:
        with local_lock(path):
            if _digest_of_file(path) != expected:
                return False
            os.remove(path)
            return True


def _digest_of_file(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return digest(fh.read())
    except FileNotFoundError:
        return None


class ConditionalPutCAS(CheckedCAS):
    """S3 conditional PUTs: ``If-None-Match: *`` to create, ``If-Match: <ETag>`` to replace.

    Deleting compares the ETag, then deletes (as :class:`CheckedCAS` does).
    """

    def read(self, path: str) -> Versioned | None:
        try:
            # HEAD before GET: the bytes are at least as new as the tag, so a swap naming the
            # tag can only fail, never overwrite something unseen.
            tag = str(self.fs.info(path, refresh=True)["ETag"])
            return Versioned(bytes(self.fs.cat_file(path)), tag)
        except FileNotFoundError:
            return None

    def swap(self, path: str, data: bytes, expected: str | None) -> str | None:
        condition = {"mode": "create"} if expected is None else {"IfMatch": expected}
        try:
            out = self.fs.pipe_file(path, data, **condition)
        except FileExistsError:
            return None
        except OSError as exc:
            code = error_code(exc)
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            if code != "NotImplemented":
                raise
            # A store without conditional writes: compare, then write.
            current = self.read(path)
            if (current.version if current else None) != expected:
                return None
            out = self.fs.pipe_file(path, data)
        tag = out.get("ETag") if isinstance(out, Mapping) else None
        return str(tag) if tag else str(self.fs.info(path, refresh=True)["ETag"])
